// .mlpackage -> Graph (src/ir/graph.ts) + model description, for packages we wrote and packages coremltools
// wrote. The mapping back:
// - `const` ops whose value is in a weight file become Consts whose load() reads the blob on demand;
// - `const` ops with an immediate value of at most 10 elements (what coremltools prints inline) become
//   Literals inlined into each op that uses them, and so do larger ones where an op's input must be a
//   compile-time constant (split_sizes of 12 heads); larger immediates used as values become Consts
//   held in memory;
// - a literal that an op uses inside a tuple (concat's values), or that is a model output, becomes a Const,
//   since the graph holds only names there;
// - unknown dims get symbol names: those our writer stored in the metadata, else `<value>_d<axis>`.
// A multifunction package (iOS 18) is read one function at a time: the default one, or the one named.
// Anything the graph cannot express (other model kinds, nested blocks, lists,
// tuples, dictionaries, states, int64/fp64 tensors, ...) is refused with UNSUPPORTED naming it.

import type { Dim, Graph, Literal, Op, TensorType, Value } from '../ir/graph.js';
import { numel } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { readFileBounded } from '../io/files.js';
import { READ_LIMITS } from '../io/limits.js';
import { featureFromProto, metadataFromProto, SYMBOLS_KEY, TAPS_KEY, type ModelDescription } from './description.js';
import { readImmediate, readTensorType, type ReadImmediate } from './mil-values.js';
import { isConstexpr, opVersions } from '../ops/index.js';
import { validateGraph } from '../ops/validate.js';
import { locatePackage } from './package.js';
import { corrupt, ProgramWeights, unsupported } from './program-weights.js';
import type {
  BindingProto,
  BlockProto,
  FunctionProto,
  ModelProto,
  NamedValueTypeProto,
  OperationProto,
  ValueProto,
} from './schema.js';
import { decodeModel } from './schema.js';
import { targetForOpset, type Target } from '../ir/target.js';

/** The largest model.mlmodel read (io/limits.ts: the program alone; its weights stay in weight.bin). */
export const MAX_MODEL_BYTES = READ_LIMITS.model;

/** The most elements a tensor of a program may have (a typed array's limit). */
const MAX_ELEMENTS = 2 ** 31 - 1;

/** Immediates up to this many elements become Literals (coremltools prints consts of <= 10 elements inline). */
const MAX_LITERAL_ELEMENTS = 10;

/** A package read back. */
export interface ReadPackageResult {
  graph: Graph;
  description: ModelDescription;
  specificationVersion: number;
  target: Target;
  opset: string;
  /** The function read ("main", or the one chosen of a multifunction package). */
  functionName: string;
  /** Every function of the program, the default first (one, "main", for most packages). */
  functions: string[];
  modelFile: string;
  weightsDir: string;
}

/** Reads the .mlpackage at `path` (its default function, or `functionName`) into a graph whose Consts load their data lazily from the weight file. */
export function readMLPackage(path: string, functionName?: string): ReadPackageResult {
  const { modelFile, weightsDir } = locatePackage(path);
  const model = decodeModel(readFileBounded(modelFile, MAX_MODEL_BYTES, 'Core ML model'), modelFile);
  const reader = new ProgramReader(model, modelFile, functionName);
  try {
    const read = reader.read();
    // A program that coremltools would not load (an unknown op, a missing input, a type its inference
    // disagrees with) is refused here rather than run.
    try {
      validateGraph(read.graph, read.target);
    } catch (e) {
      if (e instanceof ModernBertError)
        throw new ModernBertError('CORRUPT_FILE', `${modelFile}: ${e.message}`, { file: modelFile, ...e.context });
      throw e;
    }
    return { ...read, modelFile, weightsDir };
  } finally {
    reader.close();
  }
}

/** An immediate const: inlined as a Literal (small, or a compile-time input), or turned into a Const where a name is needed. */
interface Immediate {
  imm: ReadImmediate;
  /** At most MAX_LITERAL_ELEMENTS elements: inlined wherever it is used by itself. */
  small: boolean;
}

class ProgramReader {
  private readonly graph: Graph = { inputs: [], consts: new Map(), ops: [], outputs: [], taps: new Map() };
  private readonly immediates = new Map<string, Immediate>();
  private readonly types = new Map<string, TensorType>();
  private readonly taken = new Set<string>();
  private symbolsStored: string[] = [];
  private symbolsUsed = 0;
  private symbolCount = 0;

  private readonly weights: ProgramWeights;

  constructor(
    private readonly model: ModelProto,
    private readonly file: string,
    private readonly wanted?: string,
  ) {
    this.weights = new ProgramWeights(file);
  }

  read(): Omit<ReadPackageResult, 'modelFile' | 'weightsDir'> {
    const { model, file } = this;
    if (model.Type !== 'mlProgram' || !model.mlProgram) {
      if (!model.Type && !model.specificationVersion)
        throw corrupt(file, 'is not a Core ML model (no specification version, no model)');
      throw unsupported(
        file,
        `holds a ${model.Type ?? 'model of unknown kind'}; only ML Programs (mlProgram) are supported`,
        {
          kind: model.Type,
        },
      );
    }
    const described = model.description?.functions ?? [];
    const functions = Object.entries(model.mlProgram.functions ?? {});
    const names = functions.map(([n]) => n);
    if (described.length > 0) {
      // A multifunction model (iOS 18+): a FunctionDescription per function of the program.
      const listed = described.map((f) => f.name ?? '');
      if (listed.length !== names.length || !listed.every((n) => names.includes(n)))
        throw corrupt(file, `describes functions ${listed.join(', ')} but the program has ${names.join(', ')}`);
      if (!listed.includes(model.description?.defaultFunctionName ?? ''))
        throw corrupt(
          file,
          `its default function "${model.description?.defaultFunctionName ?? ''}" is none of ${listed.join(', ')}`,
        );
    } else if (functions.length !== 1) {
      throw unsupported(file, `has ${functions.length} functions (${names.join(', ')}) but no function descriptions`);
    }
    const defaultName = described.length > 0 ? model.description!.defaultFunctionName! : names[0]!;
    const functionName = this.wanted ?? defaultName;
    const fn = model.mlProgram.functions?.[functionName];
    if (!fn || !Object.hasOwn(model.mlProgram.functions!, functionName)) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${file} has no function "${functionName}"; its functions: ${names.join(', ')}`,
        { file, function: functionName },
      );
    }
    const ordered = [defaultName, ...names.filter((n) => n !== defaultName)];
    const fdesc = described.find((f) => f.name === functionName);
    const io = fdesc ?? model.description;
    const opset = fn.opset ?? '';
    const info = targetForOpset(opset);
    const blocks = Object.keys(fn.block_specializations ?? {});
    if (blocks.length !== 1)
      throw unsupported(
        file,
        `function "${functionName}" has ${blocks.length} block specializations; one is supported`,
      );
    const block = fn.block_specializations?.[opset];
    if (!block) throw corrupt(file, `function "${functionName}" has no block for its opset ${opset}`);
    if ((block.inputs ?? []).length > 0) throw unsupported(file, `the block of "${functionName}" has block inputs`);

    const userDefined = { ...(model.description?.metadata?.userDefined ?? {}) };
    this.prepareSymbols(userDefined[SYMBOLS_KEY], fn, block);
    const tapsJson = userDefined[TAPS_KEY];
    delete userDefined[SYMBOLS_KEY];
    delete userDefined[TAPS_KEY];

    for (const input of fn.inputs ?? []) this.graph.inputs.push(this.value(input, 'input'));
    for (const op of block.operations ?? []) this.operation(op);
    for (const name of block.outputs ?? []) {
      this.needName(name, 'a model output');
      this.graph.outputs.push(name);
    }
    if (tapsJson) this.readTaps(tapsJson);

    const metadata = metadataFromProto({ ...model.description?.metadata, userDefined });
    const description: ModelDescription = {
      inputs: (io?.input ?? []).map((f) => featureFromProto(f, 'model input')),
      outputs: (io?.output ?? []).map((f) => featureFromProto(f, 'model output')),
      metadata,
    };
    this.checkDescription(description);
    return {
      graph: this.graph,
      description,
      specificationVersion: model.specificationVersion ?? 0,
      target: info.target,
      opset,
      functionName,
      functions: ordered,
    };
  }

  close(): void {
    this.weights.close();
  }

  /** Symbol names for unknown dims: one for all, one per unknown dim in program order, or none (then derived names). */
  private prepareSymbols(stored: string | undefined, fn: FunctionProto, block: BlockProto): void {
    const count = (types: NamedValueTypeProto[]): number =>
      types.reduce((n, t) => n + (t.type?.tensorType?.dimensions ?? []).filter((d) => d.unknown).length, 0);
    this.symbolCount =
      count(fn.inputs ?? []) + (block.operations ?? []).reduce((n, op) => n + count(op.outputs ?? []), 0);
    if (!stored) return;
    let list: unknown;
    try {
      list = JSON.parse(stored);
    } catch {
      return; // not ours after all: derive names
    }
    if (
      Array.isArray(list) &&
      list.every((s) => typeof s === 'string') &&
      (list.length === 1 || list.length === this.symbolCount)
    ) {
      this.symbolsStored = list;
    }
  }

  private symbol(valueName: string, axis: number): string {
    if (this.symbolsStored.length === 1) return this.symbolsStored[0]!;
    if (this.symbolsStored.length === this.symbolCount && this.symbolsUsed < this.symbolsStored.length)
      return this.symbolsStored[this.symbolsUsed++]!;
    return `${valueName}_d${axis}`;
  }

  /** A named tensor value (function input or op output). */
  private value(t: NamedValueTypeProto, what: string): Value {
    const name = t.name ?? '';
    if (!name) throw corrupt(this.file, `an ${what} has no name`);
    const { dtype, shape } = readTensorType(t.type, `${what} "${name}"`);
    if (dtype === 'string') throw unsupported(this.file, `${what} "${name}" is a string tensor`);
    // A typed array holds at most 2^31 - 1 elements here; larger dims can only be corruption.
    let count = 1;
    for (const d of shape) {
      count *= d ?? 1;
      if (d !== null && (!Number.isSafeInteger(d) || d < 0 || count > MAX_ELEMENTS)) {
        throw corrupt(
          this.file,
          `${what} "${name}" has shape [${shape.map((x) => x ?? '?').join(', ')}], more than ${MAX_ELEMENTS} elements`,
        );
      }
    }
    const dims: Dim[] = shape.map((d, axis) => d ?? this.symbol(name, axis));
    this.define(name, { dtype, shape: dims });
    return { name, type: { dtype, shape: dims } };
  }

  private define(name: string, type: TensorType): void {
    if (this.types.has(name) || this.immediates.has(name)) throw corrupt(this.file, `value "${name}" is defined twice`);
    this.types.set(name, type);
    this.taken.add(name);
  }

  private operation(op: OperationProto): void {
    const type = op.type ?? '';
    const outputs = op.outputs ?? [];
    const where = `op ${outputs[0]?.name ?? '?'} (${type})`;
    if ((op.blocks ?? []).length > 0)
      throw unsupported(this.file, `${where} has nested blocks (control flow is not supported)`, { op: type });
    if (type === 'const') {
      this.constOp(op, where);
      return;
    }
    // Unknown op types are refused here; a name such as "__proto__" must never reach a kernel table.
    if (opVersions(type).length === 0)
      throw unsupported(this.file, `${where}: op type ${JSON.stringify(type.slice(0, 40))} is not supported`, {
        op: type,
      });
    const nameAttr = op.attributes?.name;
    const name = nameAttr ? String(readImmediate(nameAttr, `${where} name`).data) : (outputs[0]?.name ?? '');
    const inputs: Op['inputs'] = {};
    const tupleInputs = new Set(
      opVersions(type).flatMap((s) => s.inputs.filter((i) => i.kind === 'tuple').map((i) => i.name)),
    );
    const constInputs = new Set(opVersions(type).flatMap((s) => s.inputs.filter((i) => i.const).map((i) => i.name)));
    for (const [key, arg] of Object.entries(op.inputs ?? {})) {
      const bindings = arg.arguments ?? [];
      if (bindings.length === 0) throw corrupt(this.file, `${where} input "${key}" has no bindings`);
      if (tupleInputs.has(key) || bindings.length > 1) {
        inputs[key] = bindings.map((b, i) => this.bindingName(b, `${name}_${key}_${i}`, `${where} input "${key}"`));
      } else {
        inputs[key] = this.bindingArg(bindings[0]!, `${name}_${key}`, `${where} input "${key}"`, constInputs.has(key));
      }
    }
    // coremltools writes a constexpr op's inputs as attributes up to iOS 17 (load.py translate_constexpr).
    if (isConstexpr(type)) {
      for (const [key, val] of Object.entries(op.attributes ?? {})) {
        if (key !== 'name')
          inputs[key] = this.bindingArg({ value: val }, `${name}_${key}`, `${where} attribute "${key}"`);
      }
    }
    const values = outputs.map((o) => this.value(o, `output of ${where}`));
    this.graph.ops.push({ op: type, name, inputs, outputs: values });
  }

  /** A single-value argument: a Literal for small immediates and compile-time inputs (`attribute`), else a value name. */
  private bindingArg(b: BindingProto, nameIfValue: string, where: string, attribute = false): string | Literal {
    if (b.name !== undefined) {
      const imm = this.immediates.get(b.name);
      if (imm && (imm.small || attribute)) return toLiteral(imm.imm);
      this.needName(b.name, where);
      return b.name;
    }
    const v = this.requireValue(b, where);
    if (v.blobFileValue) return this.addBlobConst(this.freshName(nameIfValue), v, where);
    const imm = readImmediate(v, where);
    if (attribute || numel(imm.shape) <= MAX_LITERAL_ELEMENTS) return toLiteral(imm);
    return this.addMemoryConst(this.freshName(nameIfValue), imm);
  }

  /** A tuple element: always a value name (small literals are made Consts). */
  private bindingName(b: BindingProto, nameIfValue: string, where: string): string {
    if (b.name !== undefined) {
      this.needName(b.name, where);
      return b.name;
    }
    const v = this.requireValue(b, where);
    if (v.blobFileValue) return this.addBlobConst(this.freshName(nameIfValue), v, where);
    return this.addMemoryConst(this.freshName(nameIfValue), readImmediate(v, where));
  }

  private requireValue(b: BindingProto, where: string): ValueProto {
    if (!b.value) throw corrupt(this.file, `${where} binds neither a name nor a value`);
    return b.value;
  }

  /** Checks that `name` is defined; an immediate const used by name becomes a Const. */
  private needName(name: string, where: string): void {
    const small = this.immediates.get(name);
    if (small && !this.graph.consts.has(name)) this.addMemoryConst(name, small.imm);
    if (!this.types.has(name))
      throw corrupt(this.file, `${where} uses "${name}", which is not defined before it`, { value: name });
  }

  private freshName(base: string): string {
    let name = base;
    for (let i = 1; this.taken.has(name) || this.immediates.has(name); i++) name = `${base}_${i}`;
    return name;
  }

  private constOp(op: OperationProto, where: string): void {
    const outputs = op.outputs ?? [];
    if (outputs.length !== 1 || !outputs[0]!.name)
      throw corrupt(this.file, `${where} must have exactly one named output`);
    const name = outputs[0]!.name;
    const val = op.attributes?.val;
    if (!val) throw corrupt(this.file, `${where} has no "val" attribute`);
    const declared = readTensorType(outputs[0]!.type, where);
    const own = readTensorType(val.type, `${where} val`);
    if (declared.dtype !== own.dtype || declared.shape.join() !== own.shape.join()) {
      throw corrupt(
        this.file,
        `${where} declares ${declared.dtype}[${declared.shape.join(', ')}] but its value is ${own.dtype}[${own.shape.join(', ')}]`,
      );
    }
    if (val.blobFileValue) {
      this.addBlobConst(name, val, where);
      return;
    }
    // Made a Const at its first use by name (needName), so that one inlined everywhere leaves none behind.
    const imm = readImmediate(val, where);
    this.immediates.set(name, { imm, small: numel(imm.shape) <= MAX_LITERAL_ELEMENTS });
    this.taken.add(name);
  }

  private addMemoryConst(name: string, imm: ReadImmediate): string {
    if (imm.dtype === 'string' || typeof imm.data === 'string')
      throw unsupported(this.file, `string constant "${name}" cannot be a tensor value`);
    const data = imm.data;
    const type: TensorType = { dtype: imm.dtype, shape: imm.shape };
    if (!this.immediates.has(name)) this.define(name, type);
    else this.types.set(name, type);
    this.graph.consts.set(name, { name, type, load: () => data.slice() });
    return name;
  }

  /** A Const whose data stays in the weight file; its blob metadata is validated now, its data read on load(). */
  private addBlobConst(name: string, val: ValueProto, where: string): string {
    const c = this.weights.constOf(name, val, where);
    this.define(name, c.type);
    this.graph.consts.set(name, c);
    return name;
  }

  private readTaps(json: string): void {
    let taps: unknown;
    try {
      taps = JSON.parse(json);
    } catch {
      return;
    }
    if (typeof taps !== 'object' || taps === null) return;
    for (const [role, name] of Object.entries(taps))
      if (typeof name === 'string' && this.types.has(name)) this.graph.taps.set(role, name);
  }

  /** The description must describe the function's inputs and the block's outputs. */
  private checkDescription(d: ModelDescription): void {
    const inputs = new Set(this.graph.inputs.map((v) => v.name));
    for (const f of d.inputs)
      if (!inputs.has(f.name)) throw corrupt(this.file, `model input "${f.name}" is not an input of the program`);
    const outputs = new Set(this.graph.outputs);
    for (const f of d.outputs)
      if (!outputs.has(f.name)) throw corrupt(this.file, `model output "${f.name}" is not an output of the program`);
  }
}

function toLiteral(imm: ReadImmediate): Literal {
  if (typeof imm.data === 'string') return { kind: 'literal', dtype: 'string', shape: imm.shape, value: imm.data };
  const value = imm.dtype === 'bool' ? Array.from(imm.data, (v) => v !== 0) : Array.from(imm.data);
  return { kind: 'literal', dtype: imm.dtype, shape: imm.shape, value };
}
