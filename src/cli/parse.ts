// Argument parsers for commander: a bad value is a usage error naming the option, never NaN downstream.

import { InvalidArgumentError, Option } from 'commander';
import { OUTPUT_HEADS } from '../model/options.js';
import { PRECISIONS, type Precision } from '../runtime/numerics.js';

/** --head: the output head to write, one of OUTPUT_HEADS (convert, export-onnx). */
export function headOption(): Option {
  return new Option('--head <head>', "output head (default: the checkpoint's own)").choices(OUTPUT_HEADS);
}

/** A positive integer argument. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

/** A non-negative integer argument. */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  return n;
}

/** A positive finite number argument. */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  return n;
}

/** A non-negative finite number argument (a threshold such as --max-kl). */
export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`expected a non-negative number, got "${value}"`);
  return n;
}

/** A comma-separated list of positive integers. */
export function intList(value: string): number[] {
  return value.split(',').map((v) => positiveInt(v.trim()));
}

/** An arithmetic mode. */
export function precision(value: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(value))
    throw new InvalidArgumentError(`expected one of ${PRECISIONS.join(', ')}, got "${value}"`);
  return value as Precision;
}

/** A float16 emulation mode (the fidelity report compares one with float32, so fp32 itself is no choice). */
export function fp16Precision(value: string): Precision {
  const modes = PRECISIONS.filter((p) => p !== 'fp32');
  if (value === 'fp32')
    throw new InvalidArgumentError(
      `the report compares a float16 emulation with float32, so it takes one of ${modes.join(', ')}, not fp32`,
    );
  if (!(modes as readonly string[]).includes(value))
    throw new InvalidArgumentError(`expected one of ${modes.join(', ')}, got "${value}"`);
  return value as Precision;
}

/** Collects a repeatable option into a list. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
