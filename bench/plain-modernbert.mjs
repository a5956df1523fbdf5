// ModernBERT as transformers writes it, in ONNX nodes, with a batch axis: what optimum exports and
// transformers.js or a sentence-transformers user runs on onnxruntime. Inputs input_ids and attention_mask
// (B, S) int64, both axes symbolic; outputs last_hidden_state (B, S, C) and `embedding` (B, C), its mean
// over each row's real tokens (sentence-transformers' mean pooling). (B, S, C) layout, MatMul projections,
// (B, H, S, D) attention with full S x S scores and an in-graph sliding-window mask. bench/ort.mjs and
// bench/commands.mjs compare our graphs with it.

/** The plain export of a checkpoint (load.ts / io/checkpoint.ts), for inputs up to `maxLen` tokens, as ONNX bytes. */
export async function plainModel(ckpt, maxLen) {
  const { encodeOnnxModel } = await import('../dist/onnx/schema.js');
  const { valueInfo } = await import('../dist/onnx/lower.js');
  const c = ckpt.config;
  const [C, H, D, I] = [c.hidden, c.numHeads, c.headDim, c.intermediate];
  const nodes = [];
  const inits = [];
  let n = 0;
  const node = (op, inputs, attrs = {}, out = `t${n++}`) => {
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? { name, type: 7, ints: v }
        : Number.isInteger(v) && name !== 'epsilon'
          ? { name, type: 2, i: v }
          : { name, type: 1, f: v },
    );
    nodes.push({ name: `n${n++}`, op_type: op, input: inputs, output: [out], attribute });
    return out;
  };
  const init = (name, dims, data, type = 1) => {
    const bytes =
      type === 7
        ? new Uint8Array(BigInt64Array.from(data, BigInt).buffer)
        : new Uint8Array(Float32Array.from(data).buffer);
    inits.push({ name, dims, data_type: type, raw_data: bytes });
    return name;
  };
  const W = (name) => {
    const t = ckpt.weights.get(name);
    return init(name, t.shape, t.data);
  };
  const i64 = (v) => init(`c${n++}`, [v.length], v, 7);
  const f = (v) => init(`c${n++}`, [], [v]);
  const linear = (x, name) => node('MatMul', [x, node('Transpose', [W(name)], { perm: [1, 0] })]);
  const ln = (x, name) => node('LayerNormalization', [x, W(name)], { axis: -1, epsilon: c.normEps });
  const S = node('Gather', [node('Shape', ['input_ids']), init('one', [], [1], 7)], { axis: 0 }); // scalar S
  const S1 = node('Unsqueeze', [S, i64([0])]); // [S]
  // RoPE tables (maxLen, D), cut to (S, D): cos and sin of position * theta^(-2k/D), each frequency twice.
  const rope = (theta) => {
    const [cos, sin] = [new Float32Array(maxLen * D), new Float32Array(maxLen * D)];
    for (let s = 0; s < maxLen; s++)
      for (let k = 0; k < D / 2; k++) {
        const a = s * Math.pow(theta, (-2 * k) / D);
        cos[s * D + k] = cos[s * D + k + D / 2] = Math.cos(a);
        sin[s * D + k] = sin[s * D + k + D / 2] = Math.sin(a);
      }
    const cut = (t) => node('Slice', [t, i64([0]), S1, i64([0])]);
    return [cut(init(`cos${theta}`, [maxLen, D], cos)), cut(init(`sin${theta}`, [maxLen, D], sin))];
  };
  const tables = { global: rope(c.globalRopeTheta), local: rope(c.localRopeTheta) };
  const applyRope = (x, [cos, sin]) => {
    const half = node('Split', [x, i64([D / 2, D / 2])], { axis: -1 });
    nodes.at(-1).output = [`${half}_a`, `${half}_b`];
    const rot = node('Concat', [node('Neg', [`${half}_b`]), `${half}_a`], { axis: -1 });
    return node('Add', [node('Mul', [x, cos]), node('Mul', [rot, sin])]);
  };
  const mask = node('Cast', ['attention_mask'], { to: 1 }); // (B, S)
  const keyMask = node('Mul', [node('Sub', [f(1), node('Unsqueeze', [mask, i64([1, 2])])]), f(-1e4)]); // (B, 1, 1, S)
  const pos = node('Range', [init('r0', [], [0], 7), S, init('r1', [], [1], 7)]);
  const far = node('Greater', [
    node('Abs', [node('Sub', [node('Unsqueeze', [pos, i64([1])]), node('Unsqueeze', [pos, i64([0])])])]),
    init('half', [], [c.localWindow / 2], 7),
  ]);
  const localMask = node('Add', [keyMask, node('Mul', [node('Cast', [far], { to: 1 }), f(-1e4)])]); // (B, 1, S, S)
  let h = ln(
    node('Gather', [W('model.embeddings.tok_embeddings.weight'), 'input_ids']),
    'model.embeddings.norm.weight',
  );
  for (let i = 0; i < c.numLayers; i++) {
    const kind = c.layerTypes[i];
    const x = i === 0 ? h : ln(h, `model.layers.${i}.attn_norm.weight`);
    const qkv = node(
      'Transpose',
      [node('Reshape', [linear(x, `model.layers.${i}.attn.Wqkv.weight`), i64([0, 0, 3, H, D])])],
      { perm: [2, 0, 3, 1, 4] },
    ); // (3, B, H, S, D)
    const part = (k) => node('Squeeze', [node('Slice', [qkv, i64([k]), i64([k + 1]), i64([0])]), i64([0])]); // (B, H, S, D)
    const q = applyRope(part(0), tables[kind]);
    const k = applyRope(part(1), tables[kind]);
    const scores = node('Add', [
      node('Mul', [node('MatMul', [q, node('Transpose', [k], { perm: [0, 1, 3, 2] })]), f(1 / Math.sqrt(D))]),
      kind === 'local' ? localMask : keyMask,
    ]);
    const ctx = node('MatMul', [node('Softmax', [scores], { axis: -1 }), part(2)]); // (B, H, S, D)
    const merged = node('Reshape', [node('Transpose', [ctx], { perm: [0, 2, 1, 3] }), i64([0, 0, C])]);
    h = node('Add', [h, linear(merged, `model.layers.${i}.attn.Wo.weight`)]);
    const up = linear(ln(h, `model.layers.${i}.mlp_norm.weight`), `model.layers.${i}.mlp.Wi.weight`);
    const split = node('Split', [up, i64([I, I])], { axis: -1 });
    nodes.at(-1).output = [`${split}_in`, `${split}_gate`];
    const xin = `${split}_in`;
    const gelu = node('Mul', [
      node('Mul', [xin, f(0.5)]),
      node('Add', [node('Erf', [node('Mul', [xin, f(Math.SQRT1_2)])]), f(1)]),
    ]);
    h = node('Add', [h, linear(node('Mul', [gelu, `${split}_gate`]), `model.layers.${i}.mlp.Wo.weight`)]);
  }
  const last = node(
    'LayerNormalization',
    [h, W('model.final_norm.weight')],
    { axis: -1, epsilon: c.normEps },
    'last_hidden_state',
  );
  // Mean pooling over real tokens: sum(h * mask) / sum(mask).
  const m3 = node('Unsqueeze', [mask, i64([2])]); // (B, S, 1)
  node(
    'Div',
    [
      node('ReduceSum', [node('Mul', [last, m3]), i64([1])], { keepdims: 0 }),
      node('ReduceSum', [m3, i64([1])], { keepdims: 0 }),
    ],
    {},
    'embedding',
  );
  return encodeOnnxModel({
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    producer_name: 'bench/plain-modernbert.mjs',
    producer_version: '0',
    graph: {
      name: 'plain-modernbert',
      node: nodes,
      initializer: inits,
      input: [valueInfo('input_ids', 7, ['B', 'S']), valueInfo('attention_mask', 7, ['B', 'S'])],
      output: [valueInfo('last_hidden_state', 1, ['B', 'S', C]), valueInfo('embedding', 1, ['B', C])],
    },
  });
}

/**
 * Embeddings of tokenized texts the way sentence-transformers encodes a list: sorted by length, batches of
 * `batch` padded to the longest text in the batch, mean pooling; returned in input order.
 */
export async function embedSortedBatches(ort, session, texts, batch, padId) {
  const order = texts.map((_, i) => i).sort((a, b) => texts[a].length - texts[b].length);
  const out = new Array(texts.length);
  let slots = 0;
  for (let b = 0; b < order.length; b += batch) {
    const rows = order.slice(b, b + batch);
    const S = Math.max(...rows.map((i) => texts[i].length));
    const ids = new BigInt64Array(rows.length * S).fill(BigInt(padId));
    const att = new BigInt64Array(rows.length * S);
    rows.forEach((i, r) =>
      texts[i].forEach((id, s) => {
        ids[r * S + s] = BigInt(id);
        att[r * S + s] = 1n;
      }),
    );
    slots += rows.length * S;
    const res = await session.run(
      {
        input_ids: new ort.Tensor('int64', ids, [rows.length, S]),
        attention_mask: new ort.Tensor('int64', att, [rows.length, S]),
      },
      ['embedding'],
    );
    const C = res.embedding.dims[1];
    rows.forEach((i, r) => (out[i] = res.embedding.data.slice(r * C, (r + 1) * C)));
  }
  const tokens = texts.reduce((n, t) => n + t.length, 0);
  return { embeddings: out, fill: tokens / slots };
}
