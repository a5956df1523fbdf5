// The checkpoint folder of each head in scripts/variants-list.mjs: the test fixtures where one exists,
// and small folders built from them otherwise (a cls-pooling classifier, sentence-transformers layouts).
// Plain Node, no build needed, so that test/variants.test.ts builds them the same way.

import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];

/** `src`'s config.json passed through `edit`, written to `dir` with its tokenizer files. */
function withConfig(src, dir, edit) {
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(edit(config), null, 2));
  for (const f of TOKENIZER_FILES) copyFileSync(join(src, f), join(dir, f));
}

/**
 * Writes a safetensors file from another one, tensor by tensor: `map(name, entry, bytes)` returns the new
 * name, shape and bytes of a tensor, or null to drop it. Dtypes and metadata are kept.
 */
function rewriteSafetensors(srcFile, dstFile, map) {
  const bytes = readFileSync(srcFile);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const data = bytes.subarray(8 + headerLen);
  const out = {};
  const parts = [];
  let offset = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const made = map(name, t, data.subarray(...t.data_offsets));
    if (!made) continue;
    out[made.name] = { dtype: t.dtype, shape: made.shape, data_offsets: [offset, offset + made.bytes.length] };
    parts.push(made.bytes);
    offset += made.bytes.length;
  }
  if (header.__metadata__) out.__metadata__ = header.__metadata__;
  let text = JSON.stringify(out);
  text += ' '.repeat((8 - (text.length % 8)) % 8); // the format pads the header to 8 bytes
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  writeFileSync(dstFile, Buffer.concat([len, Buffer.from(text, 'utf8'), ...parts]));
}

/**
 * Copies the tensors of a safetensors file whose names start with `prefix`, without it (a masked LM's
 * body as a bare ModernBertModel, as sentence-transformers stores it). Byte copies: dtypes are kept.
 */
export function stripPrefix(srcFile, dstFile, prefix) {
  rewriteSafetensors(srcFile, dstFile, (name, t, bytes) =>
    name.startsWith(prefix) ? { name: name.slice(prefix.length), shape: t.shape, bytes } : null,
  );
}

/**
 * tiny-mlm with a vocabulary of `vocab` tokens (above the Neural Engine's 65,536 channels: the decoder is
 * split into chunks): the embedding table's and the decoder bias's rows repeat tiny-mlm's, the rest is
 * copied byte for byte.
 */
function wideVocab(mlm, dir, vocab) {
  withConfig(mlm, dir, (c) => ({ ...c, vocab_size: vocab }));
  rewriteSafetensors(join(mlm, 'model.safetensors'), join(dir, 'model.safetensors'), (name, t, bytes) => {
    if (name !== 'model.embeddings.tok_embeddings.weight' && name !== 'decoder.bias')
      return { name, shape: t.shape, bytes };
    const row = bytes.length / t.shape[0];
    const wide = Buffer.alloc(vocab * row);
    for (let r = 0; r < vocab; r++) bytes.copy(wide, r * row, (r % t.shape[0]) * row, ((r % t.shape[0]) + 1) * row);
    return { name, shape: [vocab, ...t.shape.slice(1)], bytes: wide };
  });
}

/** A sentence-transformers folder around tiny-mlm's body: Transformer, Pooling, optional Normalize. */
function sentenceTransformers(mlm, dir, pooling, normalize) {
  withConfig(mlm, dir, (c) => ({ ...c, architectures: ['ModernBertModel'] }));
  stripPrefix(join(mlm, 'model.safetensors'), join(dir, 'model.safetensors'), 'model.');
  writeSentenceTransformersModules(
    dir,
    JSON.parse(readFileSync(join(mlm, 'config.json'), 'utf8')).hidden_size,
    pooling,
    normalize,
  );
}

/** The sentence-transformers files around a body in `dir`: modules.json, 1_Pooling/config.json, 2_Normalize/. */
export function writeSentenceTransformersModules(dir, hidden, pooling, normalize) {
  const modules = [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
  ];
  if (normalize)
    modules.push({ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' });
  writeFileSync(join(dir, 'modules.json'), JSON.stringify(modules, null, 2));
  mkdirSync(join(dir, '1_Pooling'));
  writeFileSync(
    join(dir, '1_Pooling', 'config.json'),
    JSON.stringify(
      {
        word_embedding_dimension: hidden,
        pooling_mode_cls_token: pooling === 'cls',
        pooling_mode_mean_tokens: pooling === 'mean',
        pooling_mode_max_tokens: false,
        pooling_mode_mean_sqrt_len_tokens: false,
        pooling_mode_weightedmean_tokens: false,
        pooling_mode_lasttoken: false,
        include_prompt: true,
      },
      null,
      2,
    ),
  );
  if (normalize) mkdirSync(join(dir, '2_Normalize'));
}

/**
 * The checkpoint folder of every head, building those the fixtures lack under `dir`. `fixtures` is
 * test/fixtures. The 'none' head converts the masked LM with `--head none` (variantArgs adds it).
 */
export function buildCheckpoints(fixtures, dir) {
  const fx = (name) => join(fixtures, name);
  const seqclsCls = join(dir, 'seqcls-cls');
  withConfig(fx('tiny-cls-mean'), seqclsCls, (c) => ({ ...c, classifier_pooling: 'cls' }));
  copyFileSync(join(fx('tiny-cls-mean'), 'model.safetensors'), join(seqclsCls, 'model.safetensors'));
  const st = (name, pooling, normalize) => {
    sentenceTransformers(fx('tiny-mlm'), join(dir, name), pooling, normalize);
    return join(dir, name);
  };
  return {
    mlm: fx('tiny-mlm'),
    'mlm-bias': fx('tiny-mlm-bias'),
    'seqcls-cls': seqclsCls,
    'seqcls-mean': fx('tiny-cls-mean'),
    tokcls: fx('tiny-token'),
    'embedding-mean': st('embedding-mean', 'mean', false),
    'embedding-cls': st('embedding-cls', 'cls', false),
    'embedding-normalized': st('embedding-normalized', 'mean', true),
    none: fx('tiny-mlm'),
    // Not a head of the covering array: the layout variants' wide vocabulary (a split decoder).
    'mlm-70k': (wideVocab(fx('tiny-mlm'), join(dir, 'mlm-70k'), 70000), join(dir, 'mlm-70k')),
  };
}
