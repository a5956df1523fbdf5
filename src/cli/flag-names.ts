// The library names its options in messages as `name` or `name: value` (a typed option and the value given);
// on the command line the same message names the flag: `seqLens: 600` -> --seq-len 600, `fold: false` ->
// --no-fold, `truncate` -> --truncate.

/** Options whose flag is not their name in kebab case, or whose value is a flag of its own. */
const FLAGS: Record<string, string> = {
  seqLens: '--seq-len',
  "maskFrom: 'input'": '--mask-input',
  maskFrom: '--mask-input',
  fidelity: '--fidelity-precision',
  learnSeconds: '--learn-seconds',
  compress: '--compress',
  addHeads: '--add-head',
};

const kebab = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A library message with its option names as the command line's flags. */
export function asFlags(message: string): string {
  return message.replace(/`([A-Za-z]+)(?:: ([^`]*))?`/g, (_, name: string, value: string | undefined) => {
    const whole = FLAGS[`${name}: ${value}`];
    if (whole) return whole;
    const flag = FLAGS[name] ?? kebab(name);
    if (value === undefined || value === 'true') return flag;
    if (value === 'false') return flag.replace(/^--/, '--no-');
    return `${flag} ${value.replace(/^'(.*)'$/, '$1').replace(/^\[(.*)\]$/, '$1')}`;
  });
}
