// Hadamard matrices of orders that are not powers of two, from Paley's constructions over a prime field.
// ModernBERT's hidden sizes (768 = 12·64, 1152 = 36·32) need such a block, Kronecker'd with a Sylvester
// matrix. Entries are ±1 held in an Int8Array (row-major, order×order).

/** A K×K matrix of ±1 with H·Hᵀ = K·I, or null when neither Paley construction gives order K. */
export function paleyHadamard(order: number): Int8Array | null {
  if (order % 4 !== 0) return null;
  if (isPrime(order - 1)) return normalize(paleyI(order - 1), order); // q = order − 1 ≡ 3 (mod 4)
  const q = order / 2 - 1;
  if (q % 4 === 1 && isPrime(q)) return normalize(paleyII(q), order);
  return null;
}

function isPrime(q: number): boolean {
  if (q < 2) return false;
  for (let d = 2; d * d <= q; d++) if (q % d === 0) return false;
  return true;
}

/** Quadratic character of x modulo the prime q: 0, 1 (a nonzero square) or −1. */
function quadraticCharacters(q: number): Int8Array {
  const chi = new Int8Array(q).fill(-1);
  chi[0] = 0;
  for (let x = 1; x < q; x++) chi[(x * x) % q] = 1;
  return chi;
}

/**
 * The (q+1)×(q+1) core [[0, 1ᵀ], [±1, J]] with the Jacobsthal matrix J[i][j] = χ(j − i). For q ≡ 3 (mod 4)
 * J is antisymmetric and the core is skew (first column −1); for q ≡ 1 (mod 4) J is symmetric and the
 * core is a symmetric conference matrix (first column +1).
 */
function paleyCore(q: number, firstColumn: 1 | -1): Int8Array {
  const n = q + 1;
  const chi = quadraticCharacters(q);
  const s = new Int8Array(n * n);
  for (let j = 1; j < n; j++) {
    s[j] = 1;
    s[j * n] = firstColumn;
  }
  for (let i = 0; i < q; i++) {
    for (let j = 0; j < q; j++) s[(i + 1) * n + j + 1] = chi[(j - i + q) % q]!;
  }
  return s;
}

/** Paley I (q ≡ 3 mod 4): H = I + S with S the skew core; order q + 1. */
function paleyI(q: number): Int8Array {
  const n = q + 1;
  const h = paleyCore(q, -1);
  for (let i = 0; i < n; i++) h[i * n + i] = 1;
  return h;
}

/**
 * Paley II (q ≡ 1 mod 4): each entry of the symmetric conference matrix S becomes a 2×2 block,
 * 0 → [[1, −1], [−1, −1]] and ±1 → ±[[1, 1], [1, −1]]; order 2(q + 1).
 */
function paleyII(q: number): Int8Array {
  const m = q + 1;
  const n = 2 * m;
  const s = paleyCore(q, 1);
  const h = new Int8Array(n * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      const v = s[i * m + j]!;
      const block = v === 0 ? [1, -1, -1, -1] : [v, v, v, -v];
      h[2 * i * n + 2 * j] = block[0]!;
      h[2 * i * n + 2 * j + 1] = block[1]!;
      h[(2 * i + 1) * n + 2 * j] = block[2]!;
      h[(2 * i + 1) * n + 2 * j + 1] = block[3]!;
    }
  }
  return h;
}

/** Negates columns, then rows, so that the first row and column are all +1 (the normalized form). */
function normalize(h: Int8Array, n: number): Int8Array {
  for (let j = 0; j < n; j++) {
    if (h[j]! < 0) for (let i = 0; i < n; i++) h[i * n + j] = -h[i * n + j]!;
  }
  for (let i = 0; i < n; i++) {
    if (h[i * n]! < 0) for (let j = 0; j < n; j++) h[i * n + j] = -h[i * n + j]!;
  }
  return h;
}
