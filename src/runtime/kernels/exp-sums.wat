;; The column maxima and the sums of exponentials that KL divergence of logit vectors needs, WebAssembly SIMD
;; (f64x2). `maxes`: each column's largest value on each side and largest |a - b|. `sums`: for each
;; column j of two (rows, cols) float64 matrices a and b (one vector per column, as a model's (vocabulary,
;; positions) logits lie; exp-sums.ts copies rows in), sumA[j] = sum exp(a - maxA[j]), sumB[j] = sum
;; exp(b - maxB[j]), sumAB[j] = sum exp(a - maxA[j]) (a - b), added to what `out` holds. Row by row, so a
;; matrix is read in order. Math.exp costs about 10 ns a call here; this computes the two exponentials of
;; an element in about 3 (docs/PERFORMANCE.md, "The report's passes side by side").
;;
;; exp(t) for t <= 0: t is clamped at -700 (exp(-700) is 1e-304, nothing beside the largest term's 1);
;; k = round(t / ln 2), by adding 1.5 * 2^52, which also leaves k in the low bits for 2^k; r = t - k ln 2
;; in two parts (fdlibm's split of ln 2, whose high part times any k here is exact), so |r| <= ln(2)/2;
;; exp(r) by its Taylor series to r^13 (the next term is below 5e-18) in Estrin's scheme, whose short
;; dependency chains keep the processor busy where Horner's rule waits on each step; times 2^k, k + 1023
;; shifted into the exponent field (a normal float64 for k >= -1010). Accurate to about one unit in the
;; last place. The a and b sides (suffixes a, b) are computed side by side, inline: a call per element
;; cost half as much again.
(module
  (memory (export "memory") 1)

  ;; Adds the three sums of each of `cols` (even) columns over `rows` rows at $a and $b (row-major float64s)
  ;; to $out: sumA at $out, sumB after cols values, sumAB after 2 cols; maxA and maxB hold a value per column.
  (func (export "sums") (param $a i32) (param $b i32) (param $rows i32) (param $cols i32) (param $maxA i32) (param $maxB i32) (param $out i32)
    (local $row i32) (local $j i32) (local $width i32) (local $o i32) (local $x v128) (local $y v128)
    (local $ta v128) (local $tb v128) (local $ba v128) (local $bb v128) (local $ka v128) (local $kb v128)
    (local $ra v128) (local $rb v128) (local $r2a v128) (local $r2b v128) (local $r4a v128) (local $r4b v128)
    (local $r8a v128) (local $r8b v128) (local $q0a v128) (local $q0b v128) (local $q1a v128) (local $q1b v128)
    (local $q2a v128) (local $q2b v128) (local $q3a v128) (local $q3b v128) (local $q4a v128) (local $q4b v128)
    (local $q5a v128) (local $q5b v128) (local $q6a v128) (local $q6b v128) (local $s0a v128) (local $s0b v128)
    (local $s1a v128) (local $s1b v128) (local $s2a v128) (local $s2b v128) (local $u0a v128) (local $u0b v128)
    (local $u1a v128) (local $u1b v128) (local $pa v128) (local $pb v128)
    (local.set $width (i32.shl (local.get $cols) (i32.const 3)))
    (block $done
      (br_if $done (i32.or (i32.eqz (local.get $rows)) (i32.eqz (local.get $cols))))
      (loop $each_row
        (local.set $j (i32.const 0))
        (loop $each
          (local.set $x (v128.load (i32.add (local.get $a) (local.get $j))))
          (local.set $y (v128.load (i32.add (local.get $b) (local.get $j))))
          (local.set $ta (f64x2.pmax (f64x2.sub (local.get $x) (v128.load (i32.add (local.get $maxA) (local.get $j)))) (f64x2.splat (f64.const -700))))
          (local.set $tb (f64x2.pmax (f64x2.sub (local.get $y) (v128.load (i32.add (local.get $maxB) (local.get $j)))) (f64x2.splat (f64.const -700))))
          (local.set $ba (f64x2.add (f64x2.mul (local.get $ta) (f64x2.splat (f64.const 0x1.71547652b82fep+0))) (f64x2.splat (f64.const 0x1.8p52))))
          (local.set $bb (f64x2.add (f64x2.mul (local.get $tb) (f64x2.splat (f64.const 0x1.71547652b82fep+0))) (f64x2.splat (f64.const 0x1.8p52))))
          (local.set $ka (f64x2.sub (local.get $ba) (f64x2.splat (f64.const 0x1.8p52))))
          (local.set $kb (f64x2.sub (local.get $bb) (f64x2.splat (f64.const 0x1.8p52))))
          (local.set $ra (f64x2.sub
            (f64x2.sub (local.get $ta) (f64x2.mul (local.get $ka) (f64x2.splat (f64.const 0x1.62e42feep-1))))
            (f64x2.mul (local.get $ka) (f64x2.splat (f64.const 0x1.a39ef35793c76p-33)))))
          (local.set $rb (f64x2.sub
            (f64x2.sub (local.get $tb) (f64x2.mul (local.get $kb) (f64x2.splat (f64.const 0x1.62e42feep-1))))
            (f64x2.mul (local.get $kb) (f64x2.splat (f64.const 0x1.a39ef35793c76p-33)))))
          ;; Estrin: r^n / n! in pairs q_j = c_2j + c_2j+1 r, pairs of pairs s_j with r^2, then r^4, r^8.
          (local.set $r2a (f64x2.mul (local.get $ra) (local.get $ra)))
          (local.set $r2b (f64x2.mul (local.get $rb) (local.get $rb)))
          (local.set $r4a (f64x2.mul (local.get $r2a) (local.get $r2a)))
          (local.set $r4b (f64x2.mul (local.get $r2b) (local.get $r2b)))
          (local.set $r8a (f64x2.mul (local.get $r4a) (local.get $r4a)))
          (local.set $r8b (f64x2.mul (local.get $r4b) (local.get $r4b)))
          (local.set $q0a (f64x2.add (f64x2.splat (f64.const 0x1.0000000000000p+0)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.0000000000000p+0)))))
          (local.set $q0b (f64x2.add (f64x2.splat (f64.const 0x1.0000000000000p+0)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.0000000000000p+0)))))
          (local.set $q1a (f64x2.add (f64x2.splat (f64.const 0x1.0000000000000p-1)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.5555555555555p-3)))))
          (local.set $q1b (f64x2.add (f64x2.splat (f64.const 0x1.0000000000000p-1)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.5555555555555p-3)))))
          (local.set $q2a (f64x2.add (f64x2.splat (f64.const 0x1.5555555555555p-5)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.1111111111111p-7)))))
          (local.set $q2b (f64x2.add (f64x2.splat (f64.const 0x1.5555555555555p-5)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.1111111111111p-7)))))
          (local.set $q3a (f64x2.add (f64x2.splat (f64.const 0x1.6c16c16c16c17p-10)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.a01a01a01a01ap-13)))))
          (local.set $q3b (f64x2.add (f64x2.splat (f64.const 0x1.6c16c16c16c17p-10)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.a01a01a01a01ap-13)))))
          (local.set $q4a (f64x2.add (f64x2.splat (f64.const 0x1.a01a01a01a01ap-16)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.71de3a556c734p-19)))))
          (local.set $q4b (f64x2.add (f64x2.splat (f64.const 0x1.a01a01a01a01ap-16)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.71de3a556c734p-19)))))
          (local.set $q5a (f64x2.add (f64x2.splat (f64.const 0x1.27e4fb7789f5cp-22)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.ae64567f544e4p-26)))))
          (local.set $q5b (f64x2.add (f64x2.splat (f64.const 0x1.27e4fb7789f5cp-22)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.ae64567f544e4p-26)))))
          (local.set $q6a (f64x2.add (f64x2.splat (f64.const 0x1.1eed8eff8d898p-29)) (f64x2.mul (local.get $ra) (f64x2.splat (f64.const 0x1.6124613a86d09p-33)))))
          (local.set $q6b (f64x2.add (f64x2.splat (f64.const 0x1.1eed8eff8d898p-29)) (f64x2.mul (local.get $rb) (f64x2.splat (f64.const 0x1.6124613a86d09p-33)))))
          (local.set $s0a (f64x2.add (local.get $q0a) (f64x2.mul (local.get $r2a) (local.get $q1a))))
          (local.set $s0b (f64x2.add (local.get $q0b) (f64x2.mul (local.get $r2b) (local.get $q1b))))
          (local.set $s1a (f64x2.add (local.get $q2a) (f64x2.mul (local.get $r2a) (local.get $q3a))))
          (local.set $s1b (f64x2.add (local.get $q2b) (f64x2.mul (local.get $r2b) (local.get $q3b))))
          (local.set $s2a (f64x2.add (local.get $q4a) (f64x2.mul (local.get $r2a) (local.get $q5a))))
          (local.set $s2b (f64x2.add (local.get $q4b) (f64x2.mul (local.get $r2b) (local.get $q5b))))
          (local.set $u0a (f64x2.add (local.get $s0a) (f64x2.mul (local.get $r4a) (local.get $s1a))))
          (local.set $u0b (f64x2.add (local.get $s0b) (f64x2.mul (local.get $r4b) (local.get $s1b))))
          (local.set $u1a (f64x2.add (local.get $s2a) (f64x2.mul (local.get $r4a) (local.get $q6a))))
          (local.set $u1b (f64x2.add (local.get $s2b) (f64x2.mul (local.get $r4b) (local.get $q6b))))
          ;; exp = p 2^k.
          (local.set $pa (f64x2.mul
            (f64x2.add (local.get $u0a) (f64x2.mul (local.get $r8a) (local.get $u1a)))
            (i64x2.shl (i64x2.add (local.get $ba) (i64x2.splat (i64.const 1023))) (i32.const 52))))
          (local.set $pb (f64x2.mul
            (f64x2.add (local.get $u0b) (f64x2.mul (local.get $r8b) (local.get $u1b)))
            (i64x2.shl (i64x2.add (local.get $bb) (i64x2.splat (i64.const 1023))) (i32.const 52))))
          (local.set $o (i32.add (local.get $out) (local.get $j)))
          (v128.store (local.get $o) (f64x2.add (v128.load (local.get $o)) (local.get $pa)))
          (local.set $o (i32.add (local.get $o) (local.get $width)))
          (v128.store (local.get $o) (f64x2.add (v128.load (local.get $o)) (local.get $pb)))
          (local.set $o (i32.add (local.get $o) (local.get $width)))
          (v128.store (local.get $o)
            (f64x2.add (v128.load (local.get $o)) (f64x2.mul (local.get $pa) (f64x2.sub (local.get $x) (local.get $y)))))
          (local.set $j (i32.add (local.get $j) (i32.const 16)))
          (br_if $each (i32.lt_u (local.get $j) (local.get $width))))
        (local.set $a (i32.add (local.get $a) (local.get $width)))
        (local.set $b (i32.add (local.get $b) (local.get $width)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br_if $each_row (i32.lt_u (local.get $row) (local.get $rows))))))

  ;; Per column of `cols` (even) over `rows` rows at $a and $b: the largest value of each side (at $out and
  ;; after cols values) and the largest |a - b| (after 2 cols), folded into what $out holds. A NaN or an
  ;; infinity on either side makes that column's |a - b| NaN or infinite, and f64x2.max keeps it so.
  (func (export "maxes") (param $a i32) (param $b i32) (param $rows i32) (param $cols i32) (param $out i32)
    (local $row i32) (local $j i32) (local $width i32) (local $o i32) (local $x v128) (local $y v128)
    (local.set $width (i32.shl (local.get $cols) (i32.const 3)))
    (block $done
      (br_if $done (i32.or (i32.eqz (local.get $rows)) (i32.eqz (local.get $cols))))
      (loop $each_row
        (local.set $j (i32.const 0))
        (loop $each
          (local.set $x (v128.load (i32.add (local.get $a) (local.get $j))))
          (local.set $y (v128.load (i32.add (local.get $b) (local.get $j))))
          (local.set $o (i32.add (local.get $out) (local.get $j)))
          (v128.store (local.get $o) (f64x2.pmax (v128.load (local.get $o)) (local.get $x)))
          (local.set $o (i32.add (local.get $o) (local.get $width)))
          (v128.store (local.get $o) (f64x2.pmax (v128.load (local.get $o)) (local.get $y)))
          (local.set $o (i32.add (local.get $o) (local.get $width)))
          (v128.store (local.get $o)
            (f64x2.max (v128.load (local.get $o)) (f64x2.abs (f64x2.sub (local.get $x) (local.get $y)))))
          (local.set $j (i32.add (local.get $j) (i32.const 16)))
          (br_if $each (i32.lt_u (local.get $j) (local.get $width))))
        (local.set $a (i32.add (local.get $a) (local.get $width)))
        (local.set $b (i32.add (local.get $b) (local.get $width)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br_if $each_row (i32.lt_u (local.get $row) (local.get $rows)))))))
