// Built-in English sentences for diffs, fidelity reports and rotation learning, when the user gives none.
// Varied lengths, punctuation, numbers and [MASK]s, so both masked positions and ordinary tokens are seen.

export const BUILTIN_SENTENCES: readonly string[] = [
  'She opened the [MASK] and walked into the room.',
  'The capital of France is [MASK].',
  'blue: of the [MASK] intermediate between green and violet',
  'He drank a glass of [MASK] before going to bed.',
  'Water is composed of hydrogen and [MASK].',
  'The quick brown fox jumps over the lazy dog.',
  'In 1969, astronauts first walked on the [MASK].',
  'A dictionary lists words in alphabetical order, with their meanings and pronunciations.',
  'The weather was cold, so we stayed inside and read [MASK] by the fire.',
  'Music, painting and poetry are forms of [MASK].',
  'It is a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife.',
  'The train leaves at 7:45 from platform 3; please arrive ten minutes early.',
  'Plants convert sunlight into chemical energy through [MASK].',
  'He said: "I have never seen anything like it!" and laughed.',
  'The committee will meet again next Tuesday to discuss the budget for the coming year.',
  'A [MASK] is a small domesticated carnivorous mammal with soft fur.',
];
