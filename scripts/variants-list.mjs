// The conversions that scripts/variants.mjs makes: a pairwise covering design over every head and every
// flag value that `convert` takes, plus the combinations the converter refuses on purpose. Pure data, no
// files: test/variants.test.ts checks the covering property here without converting anything.

/**
 * The heads, as the checkpoints that scripts/variants.mjs builds for them; 'mlm-bias' is the masked LM
 * with every bias (norms, attention, MLP), whose graph gives layer_norm a beta and conv a bias.
 */
export const HEADS = [
  'mlm',
  'mlm-bias',
  'seqcls-cls',
  'seqcls-mean',
  'tokcls',
  'embedding-mean',
  'embedding-cls',
  'embedding-normalized',
  'none',
];

/** Every flag of `convert` that changes the package, with each value it takes. */
export const FACTORS = {
  norm: ['l2', 'rms', 'no-fold'],
  rotation: ['none', 'hadamard', 'learned'],
  input: ['ids', 'mask'],
  lengths: ['one', 'enumerated'],
  target: ['iOS15', 'iOS16', 'iOS17', 'iOS18'],
  weights: ['fp16', 'fp32'],
  // --pack 3: several texts per window (a segment_ids input, pooled heads one row per text).
  pack: ['none', 'pack'],
};

/**
 * The compressed forms of `convert --compress` (pal4-grouped: --group-size 16), each converted on the masked
 * LM at every target from iOS16 on: not pairwise with the other flags (compression replaces weight consts
 * only, whatever the head or norm), but every (mode, target) pair that the converter accepts.
 */
export const COMPRESSIONS = ['pal8', 'pal6', 'pal4', 'pal3', 'pal2', 'pal4-grouped', 'int8', 'int4'];
const COMPRESS_TARGETS = ['iOS16', 'iOS17', 'iOS18'];

const NAMES = ['head', ...Object.keys(FACTORS)];
const LEVELS = [HEADS, ...Object.values(FACTORS)];

/**
 * Why the converter refuses a combination on purpose (null when it must convert), with the one-line
 * error it must give. Each rule names where it is decided.
 */
export function refusal(v) {
  if (v.compress && !FACTORS.target.slice(1).includes(v.target)) {
    // src/compress/spec.ts: the constexpr ops start at iOS 16.
    return { reason: '--compress before iOS16', error: /--compress needs --target iOS16 or later/ };
  }
  if (v.compress && v.target !== 'iOS18' && ['pal3', 'int4', 'pal4-grouped'].includes(v.compress)) {
    // src/compress/spec.ts: 8-entry tables, int4 blocks and per-group tables are iOS 18 forms.
    return { reason: `--compress ${v.compress} before iOS18`, error: /needs --target iOS18/ };
  }
  if (v.norm === 'no-fold' && v.rotation !== 'none') {
    // src/model/variants.ts and the convert command: a rotation acts on the folded stream only.
    return { reason: '--no-fold with --rotation', error: /--no-fold .* cannot be combined with --rotation/ };
  }
  if (v.input === 'mask' && v.lengths === 'enumerated' && v.target !== 'iOS18') {
    // Both inputs would have enumerated shapes; coremltools refuses that before iOS 18 too
    // (converters/_converters_entry.py, _validate_enumerated_shape_inputs).
    return { reason: '--mask-input with several --seq-len before iOS18', error: /before iOS 18 only one input may/ };
  }
  // src/model/packing.ts checkPack: a packed window has one length, and its segment ids are its mask.
  if (v.pack === 'pack' && v.lengths === 'enumerated')
    return { reason: '--pack with several --seq-len', error: /packing needs one sequence length/ };
  if (v.pack === 'pack' && v.input === 'mask')
    return { reason: '--pack with --mask-input', error: /--pack cannot be combined with --mask-input/ };
  return null;
}

/** The command-line flags of a variant (without the checkpoint and --out). */
export function variantArgs(v) {
  const args = [];
  if (v.norm === 'no-fold') args.push('--no-fold');
  else args.push('--norm', v.norm);
  args.push('--rotation', v.rotation);
  // A learned rotation runs the float16 emulation on calibration tokens: one second keeps it quick.
  if (v.rotation === 'learned') args.push('--learn-seconds', '1');
  if (v.input === 'mask') args.push('--mask-input');
  args.push('--seq-len', v.lengths === 'one' ? '16' : '8,16,32');
  args.push('--target', v.target, '--weights', v.weights);
  if (v.head === 'none') args.push('--head', 'none');
  if (v.pack === 'pack') args.push('--pack', '3');
  if (!v.fidelity) args.push('--no-fidelity');
  if (v.tokenizer) args.push('--tokenizer');
  if (v.compress === 'pal4-grouped') args.push('--compress', 'pal4', '--group-size', '16');
  else if (v.compress === 'int4') args.push('--compress', 'int4', '--block-size', '16');
  else if (v.compress) args.push('--compress', v.compress);
  return args;
}

/** Every combination of head and flag values, in a fixed order. */
function allCombinations() {
  let rows = [{}];
  NAMES.forEach((name, f) => {
    rows = rows.flatMap((r) => LEVELS[f].map((value) => ({ ...r, [name]: value })));
  });
  return rows;
}

/**
 * Flags whose every combination is covered, beyond pairs: every head reads the padding mask, which the
 * graph builds from the ids or takes as an input, at one length or symbolic ones; and each norm form
 * builds different ops for symbolic lengths, which each target must be able to express.
 */
export const TRIPLES = [
  ['head', 'input', 'lengths'],
  ['norm', 'lengths', 'target'],
];

/** What a row covers, as strings: its pairs of (flag, value), and its values of each of TRIPLES. */
function pairsOf(v) {
  // A compressed row stands for its (mode, target) pair only: the pairwise rows cover the other flags.
  if (v.compress) return [`compress=${v.compress} target=${v.target}`];
  const out = [];
  for (let a = 0; a < NAMES.length; a++) {
    for (let b = a + 1; b < NAMES.length; b++) out.push(`${NAMES[a]}=${v[NAMES[a]]} ${NAMES[b]}=${v[NAMES[b]]}`);
  }
  for (const names of TRIPLES) out.push(names.map((n) => `${n}=${v[n]}`).join(' '));
  return out;
}

/** Every pair of flag values (the head counting as a flag), and triple of TRIPLES, that some accepted combination holds. */
export function requiredPairs() {
  return new Set([...allCombinations(), ...compressedCombinations()].filter((v) => !refusal(v)).flatMap(pairsOf));
}

/** The masked LM at its defaults, compressed each way at each target. */
function compressedCombinations(targets = COMPRESS_TARGETS) {
  return targets.flatMap((target) =>
    COMPRESSIONS.map((compress) => ({
      head: 'mlm',
      norm: 'l2',
      rotation: 'none',
      input: 'ids',
      lengths: 'one',
      target,
      weights: 'fp16',
      pack: 'none',
      compress,
    })),
  );
}

/** The pairs and triples of `required` that no accepted variant of `list` covers. */
export function uncoveredPairs(list, required = requiredPairs()) {
  const covered = new Set(list.filter((v) => !v.refused).flatMap(pairsOf));
  return [...required].filter((p) => !covered.has(p));
}

/**
 * The variants: a greedy pairwise covering array over the accepted combinations (every value of every
 * flag with every head, and with every value of every other flag, plus TRIPLES), then the refused
 * combinations: one per rule and target, on the masked LM. A few run the fidelity report and store the tokenizer, the first accepted one of each head.
 */
export function variantList() {
  const candidates = allCombinations().filter((v) => !refusal(v));
  const uncovered = new Set(candidates.flatMap(pairsOf)); // the compressed rows, added below, cover the rest
  const chosen = [];
  while (uncovered.size > 0) {
    let best = candidates[0];
    let bestGain = -1;
    for (const v of candidates) {
      const gain = pairsOf(v).filter((p) => uncovered.has(p)).length;
      if (gain > bestGain) [best, bestGain] = [v, gain];
    }
    chosen.push(best);
    for (const p of pairsOf(best)) uncovered.delete(p);
  }
  const refused = [
    {
      head: 'mlm',
      norm: 'no-fold',
      rotation: 'hadamard',
      input: 'ids',
      lengths: 'one',
      target: 'iOS17',
      weights: 'fp16',
      pack: 'none',
    },
    {
      head: 'tokcls',
      norm: 'no-fold',
      rotation: 'learned',
      input: 'ids',
      lengths: 'one',
      target: 'iOS17',
      weights: 'fp16',
      pack: 'none',
    },
    ...['iOS15', 'iOS16', 'iOS17'].map((target) => ({
      head: 'mlm',
      norm: 'l2',
      rotation: 'none',
      input: 'mask',
      lengths: 'enumerated',
      target,
      weights: 'fp16',
      pack: 'none',
    })),
    {
      head: 'embedding-mean',
      norm: 'l2',
      rotation: 'none',
      input: 'ids',
      lengths: 'enumerated',
      target: 'iOS18',
      weights: 'fp16',
      pack: 'pack',
    },
    {
      head: 'seqcls-cls',
      norm: 'l2',
      rotation: 'none',
      input: 'mask',
      lengths: 'one',
      target: 'iOS17',
      weights: 'fp16',
      pack: 'pack',
    },
    // Compression where the target cannot express it: once before iOS 16, and each iOS 18 form at iOS 17.
    ...compressedCombinations(['iOS15']).filter((v) => v.compress === 'pal4'),
    ...compressedCombinations(['iOS17']).filter((v) => refusal(v)),
  ];
  chosen.push(...compressedCombinations().filter((v) => !refusal(v)));
  const seen = new Set();
  const list = [...chosen, ...refused].map((v) => {
    const r = refusal(v);
    const first = !r && !seen.has(v.head);
    if (first) seen.add(v.head);
    return { ...v, fidelity: first, tokenizer: first, refused: r ? r.reason : null, error: r ? r.error : null };
  });
  // Sorted by head, so that the table reads head by head; numbered for package names.
  list.sort((a, b) => HEADS.indexOf(a.head) - HEADS.indexOf(b.head));
  return list.map((v, i) => ({ ...v, name: `${String(i + 1).padStart(2, '0')}-${v.head}`, args: variantArgs(v) }));
}

/**
 * Body and heads apart, multifunction packages and shape buckets (src/convert/heads.ts): the same body graph
 * as the covering array's, laid out differently, so a few variants cover each layout with each kind of head
 * input (per-token, pooled over the ids, pooled over a mask input), float32 I/O (iOS15) and a refusal.
 * `@CKPT` in args stands for the folder of that head's checkpoint (scripts/variants-checkpoints.mjs); an
 * embedding checkpoint shares tiny-mlm's body byte for byte, so it can be added as a head.
 */
export function layoutVariants() {
  const rows = [
    { head: 'mlm', layout: 'split', args: ['--split', 'mlm,embedding', '--seq-len', '16', '--target', 'iOS17'] },
    {
      head: 'seqcls-mean',
      layout: 'split',
      args: ['--split', '--mask-input', '--seq-len', '8,16,32', '--target', 'iOS18'],
    },
    {
      head: 'tokcls',
      layout: 'split',
      args: ['--split', '--seq-len', '16', '--target', 'iOS15', '--rotation', 'hadamard'],
    },
    {
      head: 'mlm',
      layout: 'functions',
      args: ['--functions', 'mlm,embedding,none', '--seq-len', '8,16,32', '--target', 'iOS18'],
    },
    {
      head: 'mlm',
      layout: 'add-head',
      args: [
        '--functions',
        'mlm',
        '--add-head',
        'sentence=@embedding-normalized',
        '--seq-len',
        '16',
        '--target',
        'macOS15',
        '--weights',
        'fp32',
      ],
    },
    { head: 'embedding-mean', layout: 'buckets', args: ['--buckets', '--seq-len', '8,16,32', '--target', 'iOS18'] },
    {
      head: 'mlm',
      layout: 'buckets',
      args: ['--buckets', '--functions', 'mlm,embedding', '--mask-input', '--seq-len', '8,16', '--target', 'iOS18'],
    },
    {
      head: 'mlm',
      layout: 'functions-pack',
      args: ['--functions', 'mlm,embedding,none', '--pack', '3', '--seq-len', '16', '--target', 'iOS18'],
    },
    {
      head: 'embedding-cls',
      layout: 'buckets-pack',
      args: ['--buckets', '--pack', '2', '--seq-len', '8,16', '--target', 'iOS18'],
    },
    // A 70,000-token vocabulary: the decoder split into two chunks, each stored compressed as the table is.
    // (target and compress as the covering rows name them: variants.mjs sets aside the tool's sub-byte blob artefact by them)
    {
      head: 'mlm-70k',
      layout: 'split-decoder',
      target: 'iOS18',
      compress: 'pal4-grouped',
      args: ['--seq-len', '16', '--target', 'iOS18', '--compress', 'pal4', '--group-size', '8'],
    },
    {
      head: 'mlm-70k',
      layout: 'split-decoder',
      target: 'iOS17',
      compress: 'int8',
      args: ['--seq-len', '16', '--target', 'iOS17', '--compress', 'int8'],
    },
    {
      head: 'mlm-70k',
      layout: 'split-decoder',
      target: 'iOS16',
      compress: 'pal4',
      args: ['--seq-len', '16', '--target', 'iOS16', '--compress', 'pal4'],
    },
    {
      head: 'mlm',
      layout: 'functions',
      args: ['--functions', 'mlm,embedding', '--seq-len', '16', '--target', 'iOS17'],
      refused: 'multifunction package before iOS18',
      error: /needs specification version 9/,
    },
  ];
  return rows.map((v, i) => ({
    fidelity: false,
    tokenizer: false,
    refused: null,
    error: null,
    ...v,
    name: `L${i + 1}-${v.layout}-${v.head}`,
    args: [...v.args, '--no-fidelity'],
  }));
}
