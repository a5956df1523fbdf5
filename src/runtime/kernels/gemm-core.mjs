// The blocked GEMM driver, shared verbatim by the calling thread and the pool's workers (a plain module
// because worker threads cannot load TypeScript under vitest; its types are in gemm-core.d.mts).
//
// WebAssembly cannot address a SharedArrayBuffer, so each thread owns one small instance whose memory holds
// only the current blocks: rows of the operands are copied in with TypedArray.set (memcpy speed), packed by
// SIMD code into the micro-kernel's panel layout, multiplied, and the C block is copied back out. The
// copies are O(MK + KN + MN) against O(MNK) multiply-adds, and no thread ever holds a whole weight matrix.
import { readFileSync } from 'node:fs';

/** Rows of A and columns of B in one micro-kernel tile (the panel heights of packed A and B). */
const MR = 2;
const NR = 16;
/** K-block: a 16-column panel of B over KC values of k (16 KiB) stays in L1 while A streams past it. */
const KC = 256;
/**
 * Largest row block of A and column block of B: the A block (MC x KC, 256 KiB) stays in L2, and so does
 * the C block (MC x NC, 512 KiB) that every K-block updates.
 */
const MC = 256;
const NC = 512;
/** Cap, in floats, on a packed block over all of K (MC x K or K x NC), so that K = 50k stays small. */
const BLOCK_FLOATS = 1 << 21;

const roundUp = (x, m) => Math.ceil(x / m) * m;

/**
 * dst[d .. d+n] = src[s .. s+n]. Short rows by a loop: a subarray per row costs more than copying 32
 * floats, and attention's narrow blocks (32-64 queries against 8,192 keys) copy one short row per key.
 */
function copy(dst, d, src, s, n) {
  if (n >= 64) dst.set(src.subarray(s, s + n), d);
  else for (let i = 0; i < n; i++) dst[d + i] = src[s + i];
}

/**
 * The K-blocks [start, length, endsChunk] over the padded Kp: KC long, also cut where a float16 chunk
 * ends (chunk > 0, a multiple of 4), so that C can be rounded between chunks.
 */
function kBlocks(Kp, chunk) {
  const blocks = [];
  for (let pc = 0; pc < Kp;) {
    const chunkEnd = chunk > 0 ? Math.min(Kp, (Math.floor(pc / chunk) + 1) * chunk) : Kp;
    const kb = Math.min(KC, chunkEnd - pc);
    blocks.push([pc, kb, chunk > 0 && pc + kb === chunkEnd]);
    pc += kb;
  }
  return blocks;
}

/** Compiles the kernels, with a clear error where WebAssembly SIMD is missing. */
export function loadKernelModule() {
  const bytes = readFileSync(new URL('./gemm.wasm', import.meta.url));
  try {
    return new WebAssembly.Module(bytes);
  } catch (err) {
    const cause = err instanceof Error ? err.message : String(err);
    throw new Error(`modernbert-ane needs WebAssembly SIMD (Node >= 16.4) for its CPU kernels: ${cause}`);
  }
}

/** One thread's kernel instance and the memory that holds its blocks. */
export class GemmEngine {
  constructor(module) {
    this.wasm = new WebAssembly.Instance(module, {}).exports;
    this.memory = this.wasm.memory;
    this.f32 = new Float32Array(this.memory.buffer);
  }

  /** Grows memory to at least `floats` floats; a grow detaches the old buffer, so the view is remade. */
  reserve(floats) {
    const bytes = floats * 4;
    if (bytes > this.memory.buffer.byteLength) {
      this.memory.grow(Math.ceil((bytes - this.memory.buffer.byteLength) / 65536));
      this.f32 = new Float32Array(this.memory.buffer);
    }
  }

  /**
   * The blocking of a task: padded K, the row and column block sizes, the K-blocks, and where run() puts its
   * regions in memory ([staging | packed B slab (Kp x nc) | packed A block (mc x Kp) | C block (mc x nc)]),
   * `end` being the first float after them.
   */
  blocking(t) {
    const Kp = roundUp(t.K, 4);
    const cap = (limit, r) => Math.max(r, Math.min(limit, Math.floor(BLOCK_FLOATS / Kp / r) * r));
    const nc = Math.min(roundUp(t.j1 - t.j0, NR), cap(NC, NR));
    const mc = Math.min(roundUp(t.i1 - t.i0, MR), cap(MC, MR));
    const packB = Kp * Math.max(mc, nc);
    const packA = packB + Kp * nc;
    const cblk = packA + Kp * mc;
    return { Kp, nc, mc, blocks: kBlocks(Kp, t.f16Chunk), packB, packA, cblk, end: cblk + mc * nc };
  }

  /** Floats that `packA(t, at)` writes. */
  packedAFloats(t) {
    const { Kp, mc } = this.blocking(t);
    return roundUp(t.i1 - t.i0, mc) * Kp;
  }

  /**
   * Packs the rows [i0, i1) of t's A at `at`, row block after row block (block ic at at + (ic - i0) * Kp), as
   * run() packs them one at a time: once for products that share A. Stages at 0, below `at`.
   */
  packA(t, at) {
    const { Kp, mc, blocks } = this.blocking(t);
    this.reserve(at + this.packedAFloats(t));
    for (let ic = t.i0; ic < t.i1; ic += mc) {
      const mb = Math.min(mc, t.i1 - ic);
      this.pack(
        { src: t.a, cols: t.transA, ld: t.lda },
        ic,
        mb,
        roundUp(mb, MR),
        t.K,
        Kp,
        blocks,
        MR,
        at + (ic - t.i0) * Kp,
      );
    }
  }

  /** C[rows, cols] (= or +=) A·B for the rows [i0, i1) and columns [j0, j1) of C, over all of K. */
  run(t) {
    const { K, c, i0, i1, j0, j1 } = t;
    if (i1 <= i0 || j1 <= j0) return;
    if (K === 0) {
      if (!t.accumulate) for (let i = i0; i < i1; i++) c.fill(0, i * t.ldc + j0, i * t.ldc + j1);
      return;
    }
    const { Kp, nc, mc, blocks, packB, packA, cblk, end } = this.blocking(t);
    this.reserve(end);
    const aLayout = { src: t.a, cols: t.transA, ld: t.lda };
    const bLayout = { src: t.b, cols: !t.transB, ld: t.ldb };

    for (let jc = j0; jc < j1; jc += nc) {
      const nb = Math.min(nc, j1 - jc);
      const nbp = roundUp(nb, NR);
      this.pack(bLayout, jc, nb, nbp, K, Kp, blocks, NR, packB);
      for (let ic = i0; ic < i1; ic += mc) {
        const mb = Math.min(mc, i1 - ic);
        const mbp = roundUp(mb, MR);
        this.pack(aLayout, ic, mb, mbp, K, Kp, blocks, MR, packA);
        this.loadC(t, ic, mb, mbp, jc, nb, nbp, cblk);
        for (const [pc, kb, endsChunk] of blocks) {
          this.wasm.macro(4 * (packA + pc * mbp), 4 * (packB + pc * nbp), 4 * cblk, mbp, nbp, kb, nbp);
          if (endsChunk) this.wasm.round_f16(4 * cblk, mbp * nbp);
        }
        this.storeC(t, ic, mb, jc, nb, nbp, cblk);
      }
    }
  }

  /**
   * Copies X[p0 .. p0+n, 0 .. K] of an operand into the staging area at 0, zero-padded to [np, Kp], then packs
   * it into panels of R rows at `dst`, K-block after K-block (block pc starts at dst + pc*np). X[p, k] is
   * src[p*ld + k] for a row layout and src[k*ld + p] for a column layout.
   */
  pack({ src, cols, ld }, p0, n, np, K, Kp, blocks, R, dst) {
    const f32 = this.f32;
    const padded = np !== n || Kp !== K;
    if (cols) {
      // Staged as [Kp, np]: one copy per k of n contiguous values.
      if (padded) f32.fill(0, 0, Kp * np);
      for (let k = 0; k < K; k++) copy(f32, k * np, src, k * ld + p0, n);
    } else {
      // Staged as [np, Kp]: one copy for all rows when they are contiguous and unpadded.
      if (padded) f32.fill(0, 0, np * Kp);
      if (!padded && ld === K) f32.set(src.subarray(p0 * ld, (p0 + n) * ld));
      else for (let p = 0; p < n; p++) copy(f32, p * Kp, src, (p0 + p) * ld, K);
    }
    const w = this.wasm;
    const packFn = R === NR ? (cols ? w.pack16_cols : w.pack16_rows) : cols ? w.pack2_cols : w.pack2_rows;
    for (const [pc, kb] of blocks) {
      const from = cols ? pc * np : pc;
      packFn(4 * (dst + pc * np), 4 * from, cols ? np : Kp, np, kb);
    }
  }

  /**
   * Fills the C block [mbp, nbp] at `at` with zeros, then C's current values when accumulating. Padding is
   * zeroed too: stale floats there could be subnormals, which would slow the kernel's arithmetic.
   */
  loadC(t, i0, mb, mbp, j0, nb, nbp, at) {
    const f32 = this.f32;
    if (!t.accumulate || nb !== nbp || mb !== mbp) f32.fill(0, at, at + mbp * nbp);
    if (!t.accumulate) return;
    for (let i = 0; i < mb; i++) {
      const row = (i0 + i) * t.ldc + j0;
      copy(f32, at + i * nbp, t.c, row, nb);
    }
  }

  /** Copies the C block's valid [mb, nb] part back into C. */
  storeC(t, i0, mb, j0, nb, nbp, at) {
    const f32 = this.f32;
    for (let i = 0; i < mb; i++) copy(t.c, (i0 + i) * t.ldc + j0, f32, at + i * nbp, nb);
  }

  /** gelu (erf form, float64 inside, rounded once) of every element of `x` into `out` (gelu_erf in gemm.wat). */
  gelu(out, x) {
    this.elementwise(out, x, this.wasm.gelu_erf);
  }

  /** Rounds every element of `a` to the nearest float16 value in place (see round_f16 in gemm.wat). */
  roundToF16(a) {
    this.elementwise(a, a, this.wasm.round_f16);
  }

  /** out = f(x) element by element, for a kernel f(at, n) that works in place on n floats (n % 4 == 0). */
  elementwise(out, x, f) {
    const CHUNK = 1 << 16; // 256 KiB: in and out of L2
    this.reserve(CHUNK);
    const f32 = this.f32;
    for (let s = 0; s < x.length; s += CHUNK) {
      const n = Math.min(CHUNK, x.length - s);
      const n4 = roundUp(n, 4);
      if (n4 !== n) f32.fill(0, n, n4);
      f32.set(x.subarray(s, s + n));
      f(0, n4);
      out.set(f32.subarray(0, n), s);
    }
  }

  /**
   * Attention for the queries [q0, q1) of one chunk, a sub-block of at most `block` queries at a time, so
   * that the sub-block's scores stay in cache: scores = K·Q (Sk x nq), + bias, softmax over the keys,
   * out = V·P. The same kernels as the separate ops, and per element the same order of sums (the GEMM's
   * K-blocks, the softmax per column), so the result is bit for bit that of einsum, add, softmax, einsum
   * in float32. Unlike the separate ops, everything stays in this engine's memory: K and V are packed once
   * for all sub-blocks, the scores GEMM writes its C blocks straight into the rows that the softmax reads,
   * and the probabilities are packed from there as the second product's B. (Through run() and softmax(),
   * each sub-block copied K, V and its scores in and out of JavaScript arrays: 30% of the time at 8,192 keys.)
   */
  attend(t) {
    const { Sk, D, Dv, q, bias, perKey, out, q0, q1, block } = t;
    const w = this.wasm;
    const widest = roundUp(Math.min(block + 8, q1 - q0), NR);
    const kT = { K: D, a: t.k, transA: false, lda: t.ldk, f16Chunk: 0, i0: 0, i1: Sk, j0: 0, j1: widest };
    const vT = { K: Sk, a: t.v, transA: false, lda: t.ldv, f16Chunk: 0, i0: 0, i1: Dv, j0: 0, j1: widest };
    const kB = this.blocking(kT);
    const vB = this.blocking(vT);
    const [Dp, Skp] = [kB.Kp, vB.Kp];
    // Memory, in floats (every region starts at a multiple of 4): [staging for pack() | packed Q | scores,
    // Skp rows of nbp (the first product writes roundUp(Sk, MR) of them, the second reads Skp, zeros past
    // Sk) | bias | softmax's maxima and float64 sums | packed P | C block of out | packed K | packed V].
    const at = [Math.max(vB.mc * Skp, kB.mc * Dp, Dp * widest)];
    const next = (n) => at.push(at[at.length - 1] + roundUp(n, 4));
    next(Dp * widest);
    next(Skp * widest);
    next(bias === undefined ? 0 : perKey ? Sk : Sk * widest);
    next(widest);
    next(2 * widest);
    next(Skp * widest);
    next(vB.mc * widest);
    next(this.packedAFloats(kT));
    next(this.packedAFloats(vT));
    const [packQ, sAt, bAt, mAt, sumAt, packP, cAt, kAt, vAt, end] = at;
    this.reserve(end);
    this.packA(kT, kAt);
    this.packA(vT, vAt);
    if (perKey) this.f32.set(bias, bAt);
    for (let j = q0; j < q1; j += block) {
      // A remainder under 8 queries joins the block before it (the softmax kernel wants slabs of 8 or more).
      const nq = q1 - j - block < 8 ? q1 - j : block;
      const nbp = roundUp(nq, NR);
      const f32 = this.f32;
      this.pack({ src: q, cols: true, ld: t.ldq }, j, nq, nbp, D, Dp, kB.blocks, NR, packQ);
      f32.fill(0, sAt, sAt + Skp * nbp);
      for (let ic = 0; ic < Sk; ic += kB.mc) {
        const mbp = roundUp(Math.min(kB.mc, Sk - ic), MR);
        for (const [pc, kb] of kB.blocks)
          w.macro(4 * (kAt + ic * Dp + pc * mbp), 4 * (packQ + pc * nbp), 4 * (sAt + ic * nbp), mbp, nbp, kb, nbp);
      }
      if (bias && !perKey) {
        if (nbp !== nq) f32.fill(0, bAt, bAt + Sk * nbp);
        for (let r = 0; r < Sk; r++) copy(f32, bAt + r * nbp, bias, r * t.ldb + j, nq);
      }
      if (bias) w.add_bias(4 * sAt, 4 * bAt, Sk, nbp, perKey ? 1 : 0);
      w.softmax_cols(4 * sAt, Sk, nbp, 4 * mAt, 4 * sumAt);
      for (const [pc, kb] of vB.blocks) w.pack16_cols(4 * (packP + pc * nbp), 4 * (sAt + pc * nbp), nbp, nbp, kb);
      for (let ic = 0; ic < Dv; ic += vB.mc) {
        const mb = Math.min(vB.mc, Dv - ic);
        const mbp = roundUp(mb, MR);
        f32.fill(0, cAt, cAt + mbp * nbp);
        for (const [pc, kb] of vB.blocks)
          w.macro(4 * (vAt + ic * Skp + pc * mbp), 4 * (packP + pc * nbp), 4 * cAt, mbp, nbp, kb, nbp);
        for (let i = 0; i < mb; i++) copy(out, (ic + i) * t.ldo + j, f32, cAt + i * nbp, nq);
      }
      if (nq !== block) break;
    }
  }

  /**
   * Softmax over axis 1 of x viewed as [outer, n, inner], plus an optional bias (one value per element, or
   * one per position of the axis when perKey), into out; in float16 modes (half) x + bias is rounded to
   * float16 first. Each [n, inner] slab is copied in whole (rows padded to a multiple of 4) and passes
   * three times through softmax_cols in gemm.wat.
   */
  softmax(out, x, bias, perKey, outer, n, inner, half) {
    const ld = roundUp(inner, 4);
    const slab = n * ld;
    const bOff = slab;
    const mOff = bOff + (bias ? (perKey ? roundUp(n, 4) : slab) : 0);
    const sOff = mOff + ld;
    this.reserve(sOff + 2 * ld);
    const f32 = this.f32;
    const copyIn = (src, at, base) => {
      if (ld === inner) f32.set(src.subarray(base, base + n * inner), at);
      else for (let k = 0; k < n; k++) f32.set(src.subarray(base + k * inner, base + (k + 1) * inner), at + k * ld);
    };
    for (let o = 0; o < outer; o++) {
      const base = o * n * inner;
      copyIn(x, 0, base);
      if (bias) {
        if (perKey) f32.set(bias, bOff);
        else copyIn(bias, bOff, base);
        this.wasm.add_bias(0, 4 * bOff, n, ld, perKey ? 1 : 0);
        if (half) this.wasm.round_f16(0, slab);
      }
      this.wasm.softmax_cols(0, n, ld, 4 * mOff, 4 * sOff);
      if (ld === inner) out.set(f32.subarray(0, n * inner), base);
      else for (let k = 0; k < n; k++) out.set(f32.subarray(k * ld, k * ld + inner), base + k * inner);
    }
  }
}
