;; Matrix-multiply, float16-rounding and softmax kernels, WebAssembly SIMD (f32x4).
;;
;; The JavaScript driver (gemm-core.mjs) copies blocks of the operands into this module's memory, packs
;; them with the pack2_* and pack16_* functions into the panel layout that the micro-kernel streams, and
;; calls `macro` for each cache block. All pointers are byte offsets into this memory; sizes are element
;; counts.
;;
;; Packed layout (the BLIS layout): an operand block X[P, kc] is cut into panels of R consecutive rows of X
;; (R = 2 for A, 16 for B); a panel holds, for k = 0..kc-1, its R values X[p..p+R, k] contiguously.
;; The driver pads P to a multiple of R and kc to a multiple of 4 with zeros, so no kernel has an edge case.
;;
;; The micro-kernel computes a 2x16 tile of C in 8 v128 accumulators: measured on the target (Zen 5,
;; Node 20's TurboFan), 2x16 and 5x8 reach ~50 GFLOP/s per core, while tiles with 12+ accumulators spill
;; and fall to ~30. Unrolling the k loop did not help.
(module
  (memory (export "memory") 1)

  ;; C[2, 16] (row stride ldc bytes) += Apanel[kc, 2] . Bpanel[kc, 16]; kc >= 1.
  (func $kernel (param $pa i32) (param $pb i32) (param $pc i32) (param $ldc i32) (param $kc i32)
    (local $c00 v128) (local $c01 v128) (local $c02 v128) (local $c03 v128)
    (local $c10 v128) (local $c11 v128) (local $c12 v128) (local $c13 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local $a v128) (local $pc1 i32) (local $end i32)
    (local.set $pc1 (i32.add (local.get $pc) (local.get $ldc)))
    (local.set $c00 (v128.load offset=0 (local.get $pc)))
    (local.set $c01 (v128.load offset=16 (local.get $pc)))
    (local.set $c02 (v128.load offset=32 (local.get $pc)))
    (local.set $c03 (v128.load offset=48 (local.get $pc)))
    (local.set $c10 (v128.load offset=0 (local.get $pc1)))
    (local.set $c11 (v128.load offset=16 (local.get $pc1)))
    (local.set $c12 (v128.load offset=32 (local.get $pc1)))
    (local.set $c13 (v128.load offset=48 (local.get $pc1)))
    (local.set $end (i32.add (local.get $pb) (i32.shl (local.get $kc) (i32.const 6))))
    (loop $k
      (local.set $b0 (v128.load offset=0 (local.get $pb)))
      (local.set $b1 (v128.load offset=16 (local.get $pb)))
      (local.set $b2 (v128.load offset=32 (local.get $pb)))
      (local.set $b3 (v128.load offset=48 (local.get $pb)))
      (local.set $a (v128.load32_splat offset=0 (local.get $pa)))
      (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $c02 (f32x4.add (local.get $c02) (f32x4.mul (local.get $a) (local.get $b2))))
      (local.set $c03 (f32x4.add (local.get $c03) (f32x4.mul (local.get $a) (local.get $b3))))
      (local.set $a (v128.load32_splat offset=4 (local.get $pa)))
      (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $c12 (f32x4.add (local.get $c12) (f32x4.mul (local.get $a) (local.get $b2))))
      (local.set $c13 (f32x4.add (local.get $c13) (f32x4.mul (local.get $a) (local.get $b3))))
      (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 64)))
      (br_if $k (i32.lt_u (local.get $pb) (local.get $end))))
    (v128.store offset=0 (local.get $pc) (local.get $c00))
    (v128.store offset=16 (local.get $pc) (local.get $c01))
    (v128.store offset=32 (local.get $pc) (local.get $c02))
    (v128.store offset=48 (local.get $pc) (local.get $c03))
    (v128.store offset=0 (local.get $pc1) (local.get $c10))
    (v128.store offset=16 (local.get $pc1) (local.get $c11))
    (v128.store offset=32 (local.get $pc1) (local.get $c12))
    (v128.store offset=48 (local.get $pc1) (local.get $c13)))

  ;; C[mc, nc] (row stride ldc elements) += A[mc, kc] . B[kc, nc] from packed blocks; mc % 2 == 0, nc % 16 == 0.
  ;; Loop order jr then ir: one 16-column B panel (kc*64 bytes) stays in L1 while the A block streams from L2.
  (func (export "macro") (param $pa i32) (param $pb i32) (param $pc i32)
      (param $mc i32) (param $nc i32) (param $kc i32) (param $ldc i32)
    (local $ldcb i32) (local $jr i32) (local $ir i32) (local $pbj i32) (local $pcj i32)
    (local.set $ldcb (i32.shl (local.get $ldc) (i32.const 2)))
    (loop $lj
      (local.set $pbj (i32.add (local.get $pb) (i32.shl (i32.mul (local.get $jr) (local.get $kc)) (i32.const 2))))
      (local.set $pcj (i32.add (local.get $pc) (i32.shl (local.get $jr) (i32.const 2))))
      (local.set $ir (i32.const 0))
      (loop $li
        (call $kernel
          (i32.add (local.get $pa) (i32.shl (i32.mul (local.get $ir) (local.get $kc)) (i32.const 2)))
          (local.get $pbj)
          (i32.add (local.get $pcj) (i32.mul (local.get $ir) (local.get $ldcb)))
          (local.get $ldcb)
          (local.get $kc))
        (local.set $ir (i32.add (local.get $ir) (i32.const 2)))
        (br_if $li (i32.lt_u (local.get $ir) (local.get $mc))))
      (local.set $jr (i32.add (local.get $jr) (i32.const 16)))
      (br_if $lj (i32.lt_u (local.get $jr) (local.get $nc)))))

  ;; Packs X[P, kc] held row-major (X[p, k] at src + 4*(p*ld + k)) into panels of 2 rows: interleaves row pairs.
  (func (export "pack2_rows") (param $dst i32) (param $src i32) (param $ld i32) (param $P i32) (param $kc i32)
    (local $r0 i32) (local $r1 i32) (local $end i32) (local $v0 v128) (local $v1 v128) (local $p i32)
    (loop $lp
      (local.set $r0 (i32.add (local.get $src) (i32.shl (i32.mul (local.get $p) (local.get $ld)) (i32.const 2))))
      (local.set $r1 (i32.add (local.get $r0) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $end (i32.add (local.get $r0) (i32.shl (local.get $kc) (i32.const 2))))
      (loop $lk
        (local.set $v0 (v128.load (local.get $r0)))
        (local.set $v1 (v128.load (local.get $r1)))
        (v128.store offset=0 (local.get $dst)
          (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v0) (local.get $v1)))
        (v128.store offset=16 (local.get $dst)
          (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v0) (local.get $v1)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (local.set $r1 (i32.add (local.get $r1) (i32.const 16)))
        (local.set $r0 (i32.add (local.get $r0) (i32.const 16)))
        (br_if $lk (i32.lt_u (local.get $r0) (local.get $end))))
      (local.set $p (i32.add (local.get $p) (i32.const 2)))
      (br_if $lp (i32.lt_u (local.get $p) (local.get $P)))))

  ;; Packs X[P, kc] held column-major (X[p, k] at src + 4*(k*ld + p)) into panels of 2 rows: copies 8 bytes per k.
  (func (export "pack2_cols") (param $dst i32) (param $src i32) (param $ld i32) (param $P i32) (param $kc i32)
    (local $s i32) (local $k i32) (local $ldb i32) (local $p i32)
    (local.set $ldb (i32.shl (local.get $ld) (i32.const 2)))
    (loop $lp
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $p) (i32.const 2))))
      (local.set $k (i32.const 0))
      (loop $lk
        (i64.store (local.get $dst) (i64.load (local.get $s)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 8)))
        (local.set $s (i32.add (local.get $s) (local.get $ldb)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $lk (i32.lt_u (local.get $k) (local.get $kc))))
      (local.set $p (i32.add (local.get $p) (i32.const 2)))
      (br_if $lp (i32.lt_u (local.get $p) (local.get $P)))))

  ;; Packs X[P, kc] held column-major (X[p, k] at src + 4*(k*ld + p)) into panels of 16 rows: copies 64 bytes per k.
  (func (export "pack16_cols") (param $dst i32) (param $src i32) (param $ld i32) (param $P i32) (param $kc i32)
    (local $s i32) (local $k i32) (local $ldb i32) (local $p i32)
    (local.set $ldb (i32.shl (local.get $ld) (i32.const 2)))
    (loop $lp
      (local.set $s (i32.add (local.get $src) (i32.shl (local.get $p) (i32.const 2))))
      (local.set $k (i32.const 0))
      (loop $lk
        (v128.store offset=0 (local.get $dst) (v128.load offset=0 (local.get $s)))
        (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $s)))
        (v128.store offset=32 (local.get $dst) (v128.load offset=32 (local.get $s)))
        (v128.store offset=48 (local.get $dst) (v128.load offset=48 (local.get $s)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
        (local.set $s (i32.add (local.get $s) (local.get $ldb)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $lk (i32.lt_u (local.get $k) (local.get $kc))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br_if $lp (i32.lt_u (local.get $p) (local.get $P)))))

  ;; Packs X[P, kc] held row-major (X[p, k] at src + 4*(p*ld + k)) into panels of 16 rows: a 4x4 transpose of
  ;; each group of 4 rows by 4 k, written to lanes 4g..4g+3 of 4 consecutive k-rows of the panel.
  (func (export "pack16_rows") (param $dst i32) (param $src i32) (param $ld i32) (param $P i32) (param $kc i32)
    (local $ldb i32) (local $p i32) (local $g i32) (local $k i32) (local $s i32) (local $d i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $ldb (i32.shl (local.get $ld) (i32.const 2)))
    (loop $lp
      (local.set $g (i32.const 0))
      (loop $lg
        ;; s: row p + 4g at k = 0; d: lane 4g of the panel's k = 0 row.
        (local.set $s (i32.add (local.get $src)
          (i32.mul (i32.add (local.get $p) (i32.shl (local.get $g) (i32.const 2))) (local.get $ldb))))
        (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $g) (i32.const 4))))
        (local.set $k (i32.const 0))
        (loop $lk
          (local.set $x0 (v128.load (local.get $s)))
          (local.set $x1 (v128.load (i32.add (local.get $s) (local.get $ldb))))
          (local.set $x2 (v128.load (i32.add (local.get $s) (i32.shl (local.get $ldb) (i32.const 1)))))
          (local.set $x3 (v128.load (i32.add (local.get $s) (i32.mul (local.get $ldb) (i32.const 3)))))
          (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x0) (local.get $x1)))
          (local.set $t1 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x2) (local.get $x3)))
          (local.set $t2 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x0) (local.get $x1)))
          (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x2) (local.get $x3)))
          (v128.store offset=0 (local.get $d)
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t1)))
          (v128.store offset=64 (local.get $d)
            (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t1)))
          (v128.store offset=128 (local.get $d)
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t2) (local.get $t3)))
          (v128.store offset=192 (local.get $d)
            (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t2) (local.get $t3)))
          (local.set $s (i32.add (local.get $s) (i32.const 16)))
          (local.set $d (i32.add (local.get $d) (i32.const 256)))
          (local.set $k (i32.add (local.get $k) (i32.const 4)))
          (br_if $lk (i32.lt_u (local.get $k) (local.get $kc))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br_if $lg (i32.lt_u (local.get $g) (i32.const 4))))
      (local.set $dst (i32.add (local.get $dst) (i32.shl (local.get $kc) (i32.const 6))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br_if $lp (i32.lt_u (local.get $p) (local.get $P)))))

  ;; Rounds n float32 values at ptr (n % 4 == 0) to the nearest float16 value, ties to even, overflow to
  ;; ±Infinity, float16 subnormals as multiples of 2^-24; Infinity and NaN unchanged. Bit-identical to
  ;; roundToF16 in src/numeric/fp16.ts, which documents the two arithmetic tricks used here.
  (func (export "round_f16") (param $ptr i32) (param $n i32)
    (local $end i32) (local $u v128) (local $abs v128) (local $sign v128) (local $r v128) (local $sub v128)
    (local.set $end (i32.add (local.get $ptr) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
      (loop $l
        (local.set $u (v128.load (local.get $ptr)))
        (local.set $abs (v128.and (local.get $u) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff)))
        (local.set $sign (v128.xor (local.get $u) (local.get $abs)))
        ;; Normal range: keep 10 mantissa bits, ties to even; above the largest float16 becomes Infinity.
        (local.set $r (v128.and
          (i32x4.add (i32x4.add (local.get $abs) (v128.const i32x4 0xfff 0xfff 0xfff 0xfff))
            (v128.and (i32x4.shr_u (local.get $abs) (i32.const 13)) (v128.const i32x4 1 1 1 1)))
          (v128.const i32x4 0xffffe000 0xffffe000 0xffffe000 0xffffe000)))
        (local.set $r (v128.bitselect
          (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000) (local.get $r)
          (i32x4.gt_s (local.get $r) (v128.const i32x4 0x477fe000 0x477fe000 0x477fe000 0x477fe000))))
        ;; Subnormal range: (|x| + 0.5) - 0.5 rounds to a multiple of 2^-24, ties to even.
        (local.set $sub (f32x4.sub
          (f32x4.add (local.get $abs) (v128.const f32x4 0.5 0.5 0.5 0.5)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
        (local.set $r (v128.bitselect (local.get $r) (local.get $sub)
          (i32x4.ge_s (local.get $abs) (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000))))
        (local.set $r (v128.or (local.get $r) (local.get $sign)))
        (v128.store (local.get $ptr) (v128.bitselect (local.get $u) (local.get $r)
          (i32x4.ge_s (local.get $abs) (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 16)))
        (br_if $l (i32.lt_u (local.get $ptr) (local.get $end))))))

  ;; Adds a bias to X[n, ld] at x (ld % 4 == 0) in place: one value per row (b[n], $perRow = 1), the additive
  ;; key mask of attention, or one per element (b[n, ld]).
  (func (export "add_bias") (param $x i32) (param $b i32) (param $n i32) (param $ld i32) (param $perRow i32)
    (local $end i32) (local $rowEnd i32) (local $v v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.mul (local.get $n) (local.get $ld)) (i32.const 2))))
    (block $done
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (loop $row
        (local.set $rowEnd (i32.add (local.get $x) (i32.shl (local.get $ld) (i32.const 2))))
        (if (local.get $perRow)
          (then
            (local.set $v (v128.load32_splat (local.get $b)))
            (local.set $b (i32.add (local.get $b) (i32.const 4)))
            (loop $j
              (v128.store (local.get $x) (f32x4.add (v128.load (local.get $x)) (local.get $v)))
              (local.set $x (i32.add (local.get $x) (i32.const 16)))
              (br_if $j (i32.lt_u (local.get $x) (local.get $rowEnd)))))
          (else
            (loop $j
              (v128.store (local.get $x) (f32x4.add (v128.load (local.get $x)) (v128.load (local.get $b))))
              (local.set $x (i32.add (local.get $x) (i32.const 16)))
              (local.set $b (i32.add (local.get $b) (i32.const 16)))
              (br_if $j (i32.lt_u (local.get $x) (local.get $rowEnd))))))
        (br_if $row (i32.lt_u (local.get $x) (local.get $end))))))

  ;; Softmax over the rows of X[n, ld] at x, for each column, in place (ld % 4 == 0, n >= 1): the column
  ;; maxima (scratch m, ld float32), exp(x - max) with the column sums in float64 (scratch s, ld float64,
  ;; 8-byte aligned, then 1 / sum), and the products e * (1 / sum) in float64, rounded once to float32.
  ;; Rows are streamed whole, so the scratch columns stay in cache while X passes three times.
  (func (export "softmax_cols") (param $x i32) (param $n i32) (param $ld i32) (param $m i32) (param $s i32)
    (local $p i32) (local $end i32) (local $rowEnd i32) (local $pm i32) (local $ps i32) (local $ldb i32)
    (local $e v128) (local $lo v128) (local $hi v128)
    (local $d v128) (local $en v128) (local $r v128) (local $q v128)
    (local $log2e v128) (local $c1 v128) (local $c2 v128) (local $p0 v128) (local $p1 v128) (local $p2 v128) (local $p3 v128) (local $p4 v128) (local $p5 v128) (local $one v128) (local $lo87 v128)
    (local.set $log2e (v128.const f32x4 1.44269504088896341 1.44269504088896341 1.44269504088896341 1.44269504088896341))
    (local.set $c1 (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375))
    (local.set $c2 (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))
    (local.set $p0 (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p1 (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3))
    (local.set $p2 (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3))
    (local.set $p3 (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2))
    (local.set $p4 (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1))
    (local.set $p5 (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1))
    (local.set $one (v128.const f32x4 1 1 1 1))
    (local.set $lo87 (v128.const f32x4 -87 -87 -87 -87))
    (local.set $ldb (i32.shl (local.get $ld) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $n) (local.get $ldb))))
    ;; Pass 1: the first row as the maxima, then the max of every later row.
    (local.set $p (local.get $x))
    (local.set $pm (local.get $m))
    (local.set $rowEnd (i32.add (local.get $x) (local.get $ldb)))
    (loop $j
      (v128.store (local.get $pm) (v128.load (local.get $p)))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (local.set $pm (i32.add (local.get $pm) (i32.const 16)))
      (br_if $j (i32.lt_u (local.get $p) (local.get $rowEnd))))
    (block $done1
      (br_if $done1 (i32.ge_u (local.get $p) (local.get $end)))
      (loop $row
        (local.set $rowEnd (i32.add (local.get $p) (local.get $ldb)))
        (local.set $pm (local.get $m))
        (loop $j
          (v128.store (local.get $pm) (f32x4.max (v128.load (local.get $pm)) (v128.load (local.get $p))))
          (local.set $p (i32.add (local.get $p) (i32.const 16)))
          (local.set $pm (i32.add (local.get $pm) (i32.const 16)))
          (br_if $j (i32.lt_u (local.get $p) (local.get $rowEnd))))
        (br_if $row (i32.lt_u (local.get $p) (local.get $end)))))
    ;; Pass 2: e = exp(x - max) in place, sums in float64.
    (local.set $ps (local.get $s))
    (local.set $rowEnd (i32.add (local.get $s) (i32.shl (local.get $ld) (i32.const 3))))
    (loop $j
      (v128.store (local.get $ps) (v128.const f64x2 0 0))
      (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
      (br_if $j (i32.lt_u (local.get $ps) (local.get $rowEnd))))
    (local.set $p (local.get $x))
    (loop $row
      (local.set $rowEnd (i32.add (local.get $p) (local.get $ldb)))
      (local.set $pm (local.get $m))
      (local.set $ps (local.get $s))
      (loop $j
        ;; e = exp(d), d = x - max <= 0: Cephes' expf (d = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for
        ;; e^r, 2^n added to the exponent bits), within 2 float32 ulps; 0 below -87, where float32's exp leaves
        ;; the normal range (NaN stays NaN). Inline, its constants in locals set before the loops: V8 builds a
        ;; v128.const again at every use, and as a function with constants the softmax ran at 3.4 ns an element
        ;; against 1.9 (8,192 x 32).
        (local.set $d (f32x4.sub (v128.load (local.get $p)) (v128.load (local.get $pm))))
        (local.set $en (f32x4.nearest (f32x4.mul (local.get $d) (local.get $log2e))))
        (local.set $r (f32x4.sub (f32x4.sub (local.get $d) (f32x4.mul (local.get $en) (local.get $c1))) (f32x4.mul (local.get $en) (local.get $c2))))
        (local.set $q (f32x4.add (f32x4.mul (local.get $r) (local.get $p0)) (local.get $p1)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r)) (local.get $p2)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r)) (local.get $p3)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r)) (local.get $p4)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $r)) (local.get $p5)))
        (local.set $q (f32x4.add (f32x4.add (f32x4.mul (local.get $q) (f32x4.mul (local.get $r) (local.get $r))) (local.get $r)) (local.get $one)))
        (local.set $e (v128.andnot (i32x4.add (local.get $q) (i32x4.shl (i32x4.trunc_sat_f32x4_s (local.get $en)) (i32.const 23)))
          (f32x4.lt (local.get $d) (local.get $lo87))))
        (v128.store (local.get $p) (local.get $e))
        (v128.store offset=0 (local.get $ps) (f64x2.add (v128.load offset=0 (local.get $ps)) (f64x2.promote_low_f32x4 (local.get $e))))
        (v128.store offset=16 (local.get $ps) (f64x2.add (v128.load offset=16 (local.get $ps))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $pm (i32.add (local.get $pm) (i32.const 16)))
        (local.set $ps (i32.add (local.get $ps) (i32.const 32)))
        (br_if $j (i32.lt_u (local.get $p) (local.get $rowEnd))))
      (br_if $row (i32.lt_u (local.get $p) (local.get $end))))
    (local.set $ps (local.get $s))
    (local.set $rowEnd (i32.add (local.get $s) (i32.shl (local.get $ld) (i32.const 3))))
    (loop $j
      (v128.store (local.get $ps) (f64x2.div (v128.const f64x2 1 1) (v128.load (local.get $ps))))
      (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
      (br_if $j (i32.lt_u (local.get $ps) (local.get $rowEnd))))
    ;; Pass 3: e * (1 / sum), in float64 like the scalar kernel, rounded to float32.
    (local.set $p (local.get $x))
    (loop $row
      (local.set $rowEnd (i32.add (local.get $p) (local.get $ldb)))
      (local.set $ps (local.get $s))
      (loop $j
        (local.set $e (v128.load (local.get $p)))
        (local.set $lo (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (local.get $e)) (v128.load offset=0 (local.get $ps)))))
        (local.set $hi (f32x4.demote_f64x2_zero (f64x2.mul
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))
          (v128.load offset=16 (local.get $ps)))))
        (v128.store (local.get $p) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $lo) (local.get $hi)))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $ps (i32.add (local.get $ps) (i32.const 32)))
        (br_if $j (i32.lt_u (local.get $p) (local.get $rowEnd))))
      (br_if $row (i32.lt_u (local.get $p) (local.get $end)))))

  ;; gelu(x) = 0.5 x (1 + erf(x / sqrt 2)) in place over n floats at p (n % 2 == 0), two at a time in float64
  ;; as the scalar kernel computes it (activation.ts), rounded once to float32; erf is its erf (Numerical
  ;; Recipes' erfc, |error| < 1.2e-7: erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), t = 1 / (1 + z/2)).
  ;; exp(d), d <= 0: d = n ln2 + r (ln2 in two parts, |r| <= ln2/2), e^r by its Taylor series to r^11
  ;; (relative error under 1e-13) in Estrin's scheme (short dependency chains), 2^n put in the exponent bits,
  ;; and 0 below d = -708 (the mask clears whatever n and e^r were there). n is rounded by adding and
  ;; subtracting 1.5 * 2^52, whose sum's low bits are n itself: f64x2.nearest and the float-to-int conversion
  ;; cost more on x64. Constants are locals, set once before the loop. Measured: 9 ns a value against 24-33
  ;; for the scalar loop, equal to it on 4M random values; a float32 version ran at 5 ns but moved a model
  ;; with huge activations past its golden's bound.
  (func (export "gelu_erf") (param $p i32) (param $n i32)
    (local $end i32) (local $x v128) (local $z v128) (local $t v128) (local $q v128) (local $d v128) (local $kk v128)
    (local $m v128) (local $r v128) (local $r2 v128) (local $r4 v128) (local $a0 v128) (local $a1 v128) (local $a2 v128)
    (local $e v128)
    (local $one v128) (local $half v128) (local $rsqrt2 v128) (local $c126 v128) (local $q0 v128) (local $q1 v128) (local $q2 v128) (local $q3 v128) (local $q4 v128) (local $q5 v128) (local $q6 v128) (local $q7 v128) (local $q8 v128) (local $log2e v128) (local $magic v128) (local $ln2hi v128) (local $ln2lo v128) (local $lo708 v128) (local $e2 v128) (local $e3 v128) (local $e4 v128) (local $e5 v128) (local $e6 v128) (local $e7 v128) (local $e8 v128) (local $e9 v128) (local $e10 v128) (local $e11 v128)
    (local.set $one (v128.const f64x2 1 1))
    (local.set $half (v128.const f64x2 0.5 0.5))
    (local.set $rsqrt2 (v128.const f64x2 0.7071067811865476 0.7071067811865476))
    (local.set $c126 (v128.const f64x2 1.26551223 1.26551223))
    (local.set $q0 (v128.const f64x2 0.17087277 0.17087277))
    (local.set $q1 (v128.const f64x2 -0.82215223 -0.82215223))
    (local.set $q2 (v128.const f64x2 1.48851587 1.48851587))
    (local.set $q3 (v128.const f64x2 -1.13520398 -1.13520398))
    (local.set $q4 (v128.const f64x2 0.27886807 0.27886807))
    (local.set $q5 (v128.const f64x2 -0.18628806 -0.18628806))
    (local.set $q6 (v128.const f64x2 0.09678418 0.09678418))
    (local.set $q7 (v128.const f64x2 0.37409196 0.37409196))
    (local.set $q8 (v128.const f64x2 1.00002368 1.00002368))
    (local.set $log2e (v128.const f64x2 1.4426950408889634 1.4426950408889634))
    (local.set $magic (v128.const f64x2 6755399441055744 6755399441055744))
    (local.set $ln2hi (v128.const f64x2 0.6931471803691238 0.6931471803691238))
    (local.set $ln2lo (v128.const f64x2 1.9082149292705877e-10 1.9082149292705877e-10))
    (local.set $lo708 (v128.const f64x2 -708 -708))
    (local.set $e2 (v128.const f64x2 0.5 0.5))
    (local.set $e3 (v128.const f64x2 0.16666666666666666 0.16666666666666666))
    (local.set $e4 (v128.const f64x2 0.041666666666666664 0.041666666666666664))
    (local.set $e5 (v128.const f64x2 0.008333333333333333 0.008333333333333333))
    (local.set $e6 (v128.const f64x2 0.001388888888888889 0.001388888888888889))
    (local.set $e7 (v128.const f64x2 0.0001984126984126984 0.0001984126984126984))
    (local.set $e8 (v128.const f64x2 2.48015873015873e-05 2.48015873015873e-05))
    (local.set $e9 (v128.const f64x2 2.7557319223985893e-06 2.7557319223985893e-06))
    (local.set $e10 (v128.const f64x2 2.755731922398589e-07 2.755731922398589e-07))
    (local.set $e11 (v128.const f64x2 2.505210838544172e-08 2.505210838544172e-08))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (loop $i
        (local.set $x (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))))
        (local.set $z (f64x2.abs (f64x2.mul (local.get $x) (local.get $rsqrt2))))
        (local.set $t (f64x2.div (local.get $one) (f64x2.add (local.get $one) (f64x2.mul (local.get $z) (local.get $half)))))
        (local.set $q (local.get $q0))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q1)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q2)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q3)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q4)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q5)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q6)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q7)))
        (local.set $q (f64x2.add (f64x2.mul (local.get $q) (local.get $t)) (local.get $q8)))
        (local.set $d (f64x2.add (f64x2.sub (f64x2.neg (f64x2.mul (local.get $z) (local.get $z))) (local.get $c126)) (f64x2.mul (local.get $t) (local.get $q))))
        (local.set $kk (f64x2.add (f64x2.mul (local.get $d) (local.get $log2e)) (local.get $magic)))
        (local.set $m (f64x2.sub (local.get $kk) (local.get $magic)))
        (local.set $r (f64x2.sub (f64x2.sub (local.get $d) (f64x2.mul (local.get $m) (local.get $ln2hi))) (f64x2.mul (local.get $m) (local.get $ln2lo))))
        (local.set $r2 (f64x2.mul (local.get $r) (local.get $r)))
        (local.set $r4 (f64x2.mul (local.get $r2) (local.get $r2)))
        (local.set $a0 (f64x2.add (f64x2.add (local.get $one) (local.get $r)) (f64x2.mul (local.get $r2) (f64x2.add (local.get $e2) (f64x2.mul (local.get $r) (local.get $e3))))))
        (local.set $a1 (f64x2.add (f64x2.add (local.get $e4) (f64x2.mul (local.get $r) (local.get $e5))) (f64x2.mul (local.get $r2) (f64x2.add (local.get $e6) (f64x2.mul (local.get $r) (local.get $e7))))))
        (local.set $a2 (f64x2.add (f64x2.add (local.get $e8) (f64x2.mul (local.get $r) (local.get $e9))) (f64x2.mul (local.get $r2) (f64x2.add (local.get $e10) (f64x2.mul (local.get $r) (local.get $e11))))))
        (local.set $e (f64x2.add (f64x2.add (local.get $a0) (f64x2.mul (local.get $r4) (local.get $a1))) (f64x2.mul (f64x2.mul (local.get $r4) (local.get $r4)) (local.get $a2))))
        ;; 2^n: (n + 1023) << 52, from the rounded sum's bits less those of 1.5 * 2^52 - 1023.
        (local.set $e (v128.andnot (f64x2.mul (local.get $e) (i64x2.shl (i64x2.sub (local.get $kk) (v128.const i64x2 0x4337fffffffffc01 0x4337fffffffffc01)) (i32.const 52)))
          (f64x2.lt (local.get $d) (local.get $lo708))))
        ;; erf(|x| / sqrt 2) = 1 - erfc, then x's sign; gelu = 0.5 x (1 + erf).
        (local.set $e (v128.or (f64x2.sub (local.get $one) (f64x2.mul (local.get $t) (local.get $e)))
          (v128.and (local.get $x) (v128.const i64x2 0x8000000000000000 0x8000000000000000))))
        (v128.store64_lane 0 (local.get $p) (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.mul (local.get $x) (local.get $half)) (f64x2.add (local.get $one) (local.get $e)))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br_if $i (i32.lt_u (local.get $p) (local.get $end))))))
)
