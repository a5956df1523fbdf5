// Graph (src/ir/graph.ts) -> .mlpackage, following coremltools' backend/mil/load.py (MILProtoExporter and
// CoreMLProtoExporter) and helper.py:
// - one function "main" whose block is the function's only specialization, keyed by the target's opset;
// - every Const and every Literal becomes a `const` op (attributes `name` and `val`) emitted just before
//   the first op that uses it; ops bind all their inputs by name, never by inline value, as coremltools does;
// - a const's value goes to weights/weight.bin when it has at least 10 elements of a dtype that the blob
//   format takes at the target (should_use_weight_file), otherwise it is an immediate value in the proto;
// - every other op carries its `name` attribute; symbolic dims are unknown dimensions;
// - a constexpr op (compressed weights) takes its inputs' values directly, as translate_constexpr writes
//   them: as attributes up to iOS 17, as bindings by value from iOS 18; no const ops are emitted for them.
//   Consts with one storageKey share one blob (coremltools' weight_id cache).
// Weights stream: each Const is loaded, encoded, appended to the open weight file and dropped in turn.

import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Arg, DType, Graph, Literal, Op, TensorData } from '../ir/graph.js';
import { isLiteral, numel } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import {
  describeGraph,
  featureToProto,
  metadataToProto,
  metadataWithExtras,
  type DescriptionOptions,
} from './description.js';
import { BlobWriter, type BlobDataType } from './milblob.js';
import { immediateValue, literalData, namedType, stringValue, tensorValueType } from './mil-values.js';
import { isConstexpr } from '../ops/index.js';
import { validateGraph } from '../ops/validate.js';
import { WEIGHT_FILE, writePackageAtomically, type ExtraItem } from './package.js';
import type { BindingProto, BlockProto, ModelProto, OperationProto, ValueProto } from './schema.js';
import { encodeModel, encodeOperation } from './schema.js';
import { atLeast, targetInfo, type Target, type TargetInfo } from '../ir/target.js';
import { encodeTensorBytes, paddingBits } from './tensor-bytes.js';

/** The name by which the program refers to the weight file. */
const WEIGHT_FILE_REF = `@model_path/weights/${WEIGHT_FILE}`;

/** backend/mil/load.py should_use_weight_file: constants this small stay in the proto. */
const MIN_BLOB_ELEMENTS = 10;

/** MIL identifiers (MIL.proto): value names must match this. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_@]*$/;

export interface WriteProgress {
  /** Const ops written so far (graph Consts only, not literals) and how many there will be. */
  constsWritten: number;
  constsTotal: number;
  /** Bytes in weight.bin so far. */
  weightBytes: number;
  /** The const just written. */
  name: string;
}

/** One function of a multifunction package (iOS 18+): its name, graph and input/output descriptions. */
export interface FunctionToWrite {
  name: string;
  graph: Graph;
  description?: Omit<DescriptionOptions, 'metadata'>;
}

export interface WriteOptions {
  graph: Graph;
  description?: DescriptionOptions;
  /**
   * Several functions (iOS 18+) instead of one "main": `graph` is then the default function's graph, and
   * constants equal across functions are written once (coremltools' save_multifunction, const_deduplication).
   */
  functions?: readonly FunctionToWrite[];
  /** The default function's name (with `functions`). */
  defaultFunction?: string;
  /** Deployment target ('iOS17' = 'macOS14' by default). */
  target?: Target;
  /** Replace an existing package at the path (only a package: see checkPackageOutput). */
  force?: boolean;
  /** Paths that must survive even with force (the input checkpoint). */
  protect?: readonly string[];
  onProgress?: (progress: WriteProgress) => void;
  /** Extra items (the tokenizer) to store beside the model. */
  extraItems?: readonly ExtraItem[];
  /**
   * Called once weight.bin is complete, before the program is written (the package is still in its
   * temporary folder), with the file and the blob offset of each Const of the default function stored
   * there: convert's fidelity report runs the weights as written. What it returns joins the metadata's
   * userDefined entries; what it throws stops the write, leaving nothing behind.
   */
  afterWeights?: (
    weightFile: string,
    blobs: ReadonlyMap<string, number>,
  ) => Promise<Record<string, string> | undefined>;
}

export interface WriteStats {
  target: Target;
  specificationVersion: number;
  opset: string;
  /** Graph Consts written, and how many of them went to weight.bin or inline. */
  consts: number;
  blobs: number;
  inlineConsts: number;
  /** Consts that no op or output uses; they are not written. */
  unusedConsts: number;
  /** Literal inputs written as const ops. */
  literals: number;
  weightBytes: number;
  modelBytes: number;
  /** weightBytes + modelBytes (Manifest.json aside). */
  bytesWritten: number;
  /** Time spent in Const.load() (producing weights) and in encoding and writing them. */
  loadMs: number;
  writeMs: number;
  totalMs: number;
}

/** Blob data type for a dtype at a target, or undefined when such constants must stay inline (should_use_weight_file). */
function blobType(dtype: DType, target: Target): BlobDataType | undefined {
  switch (dtype) {
    case 'fp16':
    case 'fp32':
    case 'uint8':
    case 'int8':
      return dtype;
    case 'int16':
    case 'int32':
    case 'uint32':
      return atLeast(target, 'iOS18') ? dtype : undefined;
    case 'bool':
      return undefined;
    default: // the sub-byte types: numpy holds them as uint8/int8, which always go to the weight file
      return dtype;
  }
}

/** All value names of a graph. */
function valueNames(graph: Graph): string[] {
  return [
    ...graph.inputs.map((v) => v.name),
    ...graph.consts.keys(),
    ...graph.ops.flatMap((op) => op.outputs.map((o) => o.name)),
  ];
}

/** Value names become MIL identifiers; refuse the graph before anything is written if one cannot. */
function checkValueNames(graph: Graph): void {
  for (const name of valueNames(graph)) {
    if (!IDENTIFIER.test(name)) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `value name "${name}" is not a MIL identifier ([A-Za-z_][A-Za-z0-9_@]*)`,
        { name },
      );
    }
  }
}

/** Builds the block's operations, streaming Consts into the weight file. */
class ProgramBuilder {
  /** The block's operations, each encoded as it is built (encodeOperation). */
  readonly operations: Uint8Array[] = [];
  private readonly taken: Set<string>;
  private readonly emitted = new Set<string>();
  /** Blobs written for a storageKey: what and where. */
  private readonly stored = new Map<string, { dtype: DType; count: number; offset: number }>();
  /** The blob (metadata) offset of each Const stored in weight.bin. */
  readonly blobOffsets = new Map<string, number>();
  /** The Consts that ops or outputs use: the ones that will be written. */
  readonly constsUsed: Set<string>;
  constsWritten = 0;
  /** Graph Consts that went to weight.bin; `blobs` also counts large literals. */
  constBlobs = 0;
  blobs = 0;
  literals = 0;
  loadMs = 0;
  writeMs = 0;

  constructor(
    private readonly graph: Graph,
    private readonly target: Target,
    private readonly weights: BlobWriter,
    private readonly onProgress: ((p: WriteProgress) => void) | undefined,
    /** Blob offsets by content, shared by the functions of one package (undefined: every blob its own). */
    private readonly shared?: Map<string, number>,
  ) {
    this.taken = new Set(valueNames(graph));
    const names = (arg: Arg): string[] => (typeof arg === 'string' ? [arg] : Array.isArray(arg) ? arg : []);
    const referenced = [...graph.ops.flatMap((op) => Object.values(op.inputs).flatMap(names)), ...graph.outputs];
    this.constsUsed = new Set(referenced.filter((n) => graph.consts.has(n)));
  }

  /** Emits every op (and the consts it needs before it), then any const that is only a graph output. */
  async build(): Promise<void> {
    for (const op of this.graph.ops) {
      if (isConstexpr(op.op)) {
        this.operations.push(encodeOperation(await this.constexprOp(op)));
        continue;
      }
      const inputs: Record<string, { arguments: BindingProto[] }> = {};
      for (const [key, arg] of Object.entries(op.inputs)) inputs[key] = { arguments: await this.bind(op, key, arg) };
      this.operations.push(
        encodeOperation({
          type: op.op,
          inputs,
          outputs: op.outputs.map((o) => namedType(o.name, o.type.dtype, o.type.shape)),
          attributes: { name: stringValue(op.name) },
        }),
      );
    }
    for (const name of this.graph.outputs) await this.emitConst(name);
  }

  private async bind(op: Op, key: string, arg: Arg): Promise<BindingProto[]> {
    if (Array.isArray(arg)) {
      const out: BindingProto[] = [];
      for (const name of arg) out.push(await this.bindName(name));
      return out;
    }
    if (isLiteral(arg)) return [{ name: this.emitLiteral(op, key, arg) }];
    return [await this.bindName(arg)];
  }

  private async bindName(name: string): Promise<BindingProto> {
    await this.emitConst(name);
    return { name };
  }

  /** A fresh value name based on `base` (op names need not be identifiers, value names must). */
  private fresh(base: string): string {
    const stem = base.replace(/[^A-Za-z0-9_@]/g, '_').replace(/^(?=[0-9@])/, '_');
    let name = stem;
    for (let i = 1; this.taken.has(name); i++) name = `${stem}_${i}`;
    this.taken.add(name);
    return name;
  }

  private pushConst(name: string, value: ValueProto): void {
    this.operations.push(
      encodeOperation({
        type: 'const',
        attributes: { name: stringValue(name), val: value },
        outputs: [{ name, type: value.type! }],
      }),
    );
  }

  /** A const op for a literal input, named after its op and input as coremltools names them. */
  private emitLiteral(op: Op, key: string, lit: Literal): string {
    const name = this.fresh(`${op.name}_${key}`);
    const data = literalData(lit);
    let value: ValueProto;
    const blob = lit.dtype === 'string' ? undefined : blobType(lit.dtype, this.target);
    if (blob && typeof data !== 'string' && numel(lit.shape) >= MIN_BLOB_ELEMENTS) {
      value = this.blobValue(lit.dtype as DType, lit.shape, data, blob, name);
    } else {
      value = immediateValue(lit.dtype, lit.shape, data, name);
    }
    this.pushConst(name, value);
    this.literals++;
    return name;
  }

  private blobValue(
    dtype: DType,
    shape: readonly number[],
    data: TensorData,
    blob: BlobDataType,
    name: string,
  ): ValueProto {
    const bytes = encodeTensorBytes(dtype, data, name);
    // const_deduplication._deduplicate_const_across_functions: equal constants (type and bytes) of several
    // functions point to one blob, so a function per head costs only its head's weights.
    const key = this.shared && `${blob}:${shape.join('x')}:${createHash('sha256').update(bytes).digest('hex')}`;
    let offset = key === undefined ? undefined : this.shared!.get(key);
    if (offset === undefined) {
      offset = this.weights.append(blob, bytes, paddingBits(dtype, data.length));
      if (key !== undefined) this.shared!.set(key, offset);
      this.blobs++;
    }
    return { type: tensorValueType(dtype, shape), blobFileValue: { fileName: WEIGHT_FILE_REF, offset } };
  }

  /** A constexpr op: its inputs' values inline (attributes before iOS 18, bindings by value from it). */
  private async constexprOp(op: Op): Promise<OperationProto> {
    const attributes: Record<string, ValueProto> = { name: stringValue(op.name) };
    const inputs: Record<string, { arguments: BindingProto[] }> = {};
    for (const [key, arg] of Object.entries(op.inputs)) {
      if (Array.isArray(arg)) throw new ModernBertError('INTERNAL', `${op.op} "${op.name}" input "${key}" is a tuple`);
      let value: ValueProto;
      if (isLiteral(arg)) {
        const data = literalData(arg);
        value = immediateValue(arg.dtype, arg.shape, data, `${op.name}_${key}`);
        this.literals++;
      } else if (this.graph.consts.has(arg)) {
        value = await this.constValue(arg);
      } else {
        // The output of another constexpr op (iOS 18 chains them): bound by name.
        inputs[key] = { arguments: [{ name: arg }] };
        continue;
      }
      if (atLeast(this.target, 'iOS18')) inputs[key] = { arguments: [{ value }] };
      else attributes[key] = value;
    }
    return {
      type: op.op,
      inputs,
      outputs: op.outputs.map((o) => namedType(o.name, o.type.dtype, o.type.shape)),
      attributes,
    };
  }

  /** Emits the const op of graph Const `name` if it is one and not yet emitted: load, encode, write, drop. */
  private async emitConst(name: string): Promise<void> {
    if (!this.graph.consts.has(name) || this.emitted.has(name)) return;
    this.emitted.add(name);
    this.pushConst(name, await this.constValue(name));
  }

  /** The Value of graph Const `name`, its data written to weight.bin (once per storageKey) or inline. */
  private async constValue(name: string): Promise<ValueProto> {
    const c = this.graph.consts.get(name)!;
    const { dtype, shape } = c.type;
    const shared = c.storageKey === undefined ? undefined : this.stored.get(c.storageKey);
    if (shared && shared.dtype === dtype && shared.count === numel(shape as number[])) {
      this.constsWritten++;
      this.constBlobs++;
      this.blobOffsets.set(name, shared.offset);
      return {
        type: tensorValueType(dtype, shape),
        blobFileValue: { fileName: WEIGHT_FILE_REF, offset: shared.offset },
      };
    }
    if (!shape.every((d): d is number => typeof d === 'number')) {
      throw new ModernBertError('BAD_ARGUMENT', `constant "${name}" has symbolic shape [${shape.join(', ')}]`, {
        const: name,
      });
    }
    const t0 = performance.now();
    let data: TensorData | undefined = c.load();
    const t1 = performance.now();
    if (data.length !== numel(shape)) {
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `constant "${name}" has ${data.length} values for shape [${shape.join(', ')}]`,
        {
          const: name,
        },
      );
    }
    const blob = blobType(dtype, this.target);
    const toBlob = blob !== undefined && data.length >= MIN_BLOB_ELEMENTS;
    const value = toBlob ? this.blobValue(dtype, shape, data, blob, name) : immediateValue(dtype, shape, data, name);
    if (toBlob) {
      this.constBlobs++;
      this.blobOffsets.set(name, value.blobFileValue!.offset!);
    }
    if (toBlob && c.storageKey !== undefined)
      this.stored.set(c.storageKey, { dtype, count: data.length, offset: value.blobFileValue!.offset! });
    data = undefined; // drop the weights before the next const is loaded
    this.loadMs += t1 - t0;
    this.writeMs += performance.now() - t1;
    this.constsWritten++;
    this.onProgress?.({
      constsWritten: this.constsWritten,
      constsTotal: this.constsUsed.size,
      weightBytes: this.weights.size,
      name,
    });
    // Let the event loop run (progress bars, signals) between weights.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return value;
  }
}

/** Writes `options.graph` (or `options.functions`) as an .mlpackage at `path` (atomically), streaming weights; returns what was written and how long it took. */
export async function writeMLPackage(path: string, options: WriteOptions): Promise<WriteStats> {
  const start = performance.now();
  const info: TargetInfo = targetInfo(options.target);
  const multi = options.functions !== undefined;
  const functions: readonly FunctionToWrite[] = options.functions ?? [
    { name: 'main', graph: options.graph, description: options.description },
  ];
  if (multi) {
    // backend/mil/load.py get_coreml_model: multifunction export needs iOS 18.
    if (!atLeast(info.target, 'iOS18'))
      throw new ModernBertError(
        'UNSUPPORTED',
        `several functions need specification version 9 (iOS18 / macOS15); target ${info.target} is version ${info.specificationVersion}`,
        { target: info.target },
      );
    const names = functions.map((f) => f.name);
    for (const n of names)
      if (!IDENTIFIER.test(n))
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `function name "${n}" is not a MIL identifier ([A-Za-z_][A-Za-z0-9_@]*)`,
          { function: n },
        );
    if (new Set(names).size !== names.length)
      throw new ModernBertError('BAD_ARGUMENT', `function names repeat: ${names.join(', ')}`);
    if (!names.includes(options.defaultFunction ?? ''))
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `default function "${options.defaultFunction}" is none of ${names.join(', ')}`,
      );
  }
  const described = functions.map((f) => {
    validateGraph(f.graph, info.target);
    checkValueNames(f.graph);
    return describeGraph(f.graph, { ...f.description, metadata: options.description?.metadata }, info.target);
  });
  metadataWithExtras(
    options.description?.metadata ?? {},
    functions.map((f) => f.graph),
  ); // refuses reserved keys before anything is written
  return writePackageAtomically(
    path,
    options.force ?? false,
    async (layout) => {
      const weights = BlobWriter.create(join(layout.weightsDir, WEIGHT_FILE));
      const shared = multi ? new Map<string, number>() : undefined;
      const builders: ProgramBuilder[] = [];
      try {
        for (const f of functions) {
          const builder = new ProgramBuilder(f.graph, info.target, weights, options.onProgress, shared);
          await builder.build();
          builders.push(builder);
        }
        weights.close();
      } catch (e) {
        weights.abort();
        throw e;
      }
      const added = await options.afterWeights?.(join(layout.weightsDir, WEIGHT_FILE), builders[0]!.blobOffsets);
      const given = options.description?.metadata ?? {};
      const metadata = metadataToProto(
        metadataWithExtras(
          added ? { ...given, userDefined: { ...given.userDefined, ...added } } : given,
          functions.map((f) => f.graph),
        ),
      );
      const encodedOps = new Map<BlockProto, Uint8Array[]>();
      const programFunctions = Object.fromEntries(
        functions.map((f, i) => {
          const block: BlockProto = { outputs: [...f.graph.outputs] };
          encodedOps.set(block, builders[i]!.operations);
          return [
            f.name,
            {
              inputs: f.graph.inputs.map((v) => namedType(v.name, v.type.dtype, v.type.shape)),
              opset: info.opset,
              block_specializations: { [info.opset]: block },
            },
          ];
        }),
      );
      // A multifunction description has a FunctionDescription per function and no top-level inputs or outputs.
      const model: ModelProto = {
        specificationVersion: info.specificationVersion,
        description: multi
          ? {
              functions: functions.map((f, i) => ({
                name: f.name,
                input: described[i]!.inputs.map(featureToProto),
                output: described[i]!.outputs.map(featureToProto),
              })),
              defaultFunctionName: options.defaultFunction,
              ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
            }
          : {
              input: described[0]!.inputs.map(featureToProto),
              output: described[0]!.outputs.map(featureToProto),
              ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
            },
        mlProgram: { version: 1, functions: programFunctions },
      };
      const bytes = encodeModel(model, encodedOps);
      writeFileSync(layout.modelFile, bytes);
      const sum = (f: (b: ProgramBuilder) => number) => builders.reduce((n, b) => n + f(b), 0);
      const consts = sum((b) => b.constsWritten);
      return {
        target: info.target,
        specificationVersion: info.specificationVersion,
        opset: info.opset,
        consts,
        blobs: sum((b) => b.blobs),
        inlineConsts: consts - sum((b) => b.constBlobs),
        unusedConsts: functions.reduce((n, f) => n + f.graph.consts.size, 0) - consts,
        literals: sum((b) => b.literals),
        weightBytes: weights.size,
        modelBytes: bytes.length,
        bytesWritten: weights.size + bytes.length,
        loadMs: sum((b) => b.loadMs),
        writeMs: sum((b) => b.writeMs),
        totalMs: performance.now() - start,
      };
    },
    options.extraItems ?? [],
    options.protect ?? [],
  );
}
