// The model description that Core ML shows and checks at prediction time: input and output features
// (multi-arrays with dtype, default shape and optional enumerated shapes or shape ranges) and metadata.
// Built from a graph the way coremltools' backend/mil/load.py (CoreMLProtoExporter) and
// models/neural_network/flexible_shape_utils.py do it, and read back from the protobuf.

import type { DType, Graph } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { valueTypes } from '../ir/value-types.js';
import type { ArrayDataTypeName, FeatureDescriptionProto, MetadataProto } from './schema.js';
import { atLeast, type Target } from '../ir/target.js';

/** userDefined metadata keys under which we store what Core ML has no field for; the reader takes them back out. */
export const RESERVED_METADATA_PREFIX = 'modernbert-ane.';
/** The names of symbolic dims (JSON list: one name for all unknown dims, or one per unknown dim in program order). */
export const SYMBOLS_KEY = `${RESERVED_METADATA_PREFIX}symbols`;
/** The graph's taps (JSON object role -> value name). */
export const TAPS_KEY = `${RESERVED_METADATA_PREFIX}taps`;

/** A multi-array input or output of the model. */
export interface FeatureInfo {
  name: string;
  /** FeatureDescription.shortDescription. */
  description?: string;
  dtype: DType;
  /** The default shape; empty for an output whose shape is flexible (coremltools leaves it unset). */
  shape: number[];
  /** The shapes an input accepts, the default first. */
  enumeratedShapes?: number[][];
  /** Per-axis bounds that an input accepts; an upper bound of -1 means unbounded. */
  shapeRange?: { lower: number; upper: number }[];
}

/** Model metadata (Model.proto Metadata). */
export interface ModelMetadata {
  shortDescription?: string;
  versionString?: string;
  author?: string;
  license?: string;
  userDefined?: Record<string, string>;
}

/** Inputs, outputs and metadata of a model. */
export interface ModelDescription {
  inputs: FeatureInfo[];
  outputs: FeatureInfo[];
  metadata: ModelMetadata;
}

/** What the caller says about an input beyond its graph type. */
export interface InputOptions {
  description?: string;
  /** Shapes accepted when the input has symbolic dims (the ANE takes enumerated shapes, not ranges). */
  enumeratedShapes?: number[][];
  /** Per-axis bounds accepted when the input has symbolic dims (alternative to enumeratedShapes). */
  shapeRange?: { lower: number; upper: number }[];
  /** The default shape (the first enumerated shape, or the lower bounds, when not given). */
  defaultShape?: number[];
}

/** Descriptions, flexible shapes and metadata to write with a graph. */
export interface DescriptionOptions {
  inputs?: Record<string, InputOptions>;
  outputs?: Record<string, { description?: string }>;
  metadata?: ModelMetadata;
}

const ARRAY_TYPES: Partial<Record<DType, ArrayDataTypeName>> = {
  fp32: 'FLOAT32',
  fp16: 'FLOAT16',
  int32: 'INT32',
  int8: 'INT8',
};

/** Builds the description of `graph`'s inputs and outputs for `target`, checking flexible shapes as coremltools does. */
export function describeGraph(graph: Graph, options: DescriptionOptions, target: Target): ModelDescription {
  for (const name of Object.keys(options.inputs ?? {})) {
    if (!graph.inputs.some((v) => v.name === name)) {
      throw new ModernBertError('BAD_ARGUMENT', `description given for "${name}", which is not a graph input`, {
        input: name,
      });
    }
  }
  const inputs = graph.inputs.map((v) =>
    describeInput(v.name, v.type.dtype, v.type.shape, options.inputs?.[v.name] ?? {}),
  );
  const enumerated = inputs.filter((f) => f.enumeratedShapes);
  // converters/_converters_entry.py _validate_enumerated_shape_inputs: one enumerated input before iOS 18;
  // from iOS 18 on, several, each with the same number of shapes.
  if (enumerated.length > 1 && !atLeast(target, 'iOS18')) {
    throw new ModernBertError(
      'UNSUPPORTED',
      `inputs ${enumerated.map((f) => f.name).join(', ')} all have enumerated shapes; before iOS 18 only one input may (give the others a shape range, or target iOS18)`,
      {
        inputs: enumerated.map((f) => f.name),
        target,
      },
    );
  }
  if (enumerated.some((f) => f.enumeratedShapes!.length !== enumerated[0]!.enumeratedShapes!.length)) {
    throw new ModernBertError('UNSUPPORTED', 'inputs with enumerated shapes must all list the same number of shapes', {
      inputs: enumerated.map((f) => f.name),
    });
  }
  const types = valueTypes(graph);
  const outputs = graph.outputs.map((name): FeatureInfo => {
    const t = types.get(name);
    if (!t)
      throw new ModernBertError('BAD_ARGUMENT', `graph output "${name}" is not a value of the graph`, { output: name });
    const shape = t.type.shape.every((d) => typeof d === 'number') ? (t.type.shape as number[]) : [];
    const description = options.outputs?.[name]?.description;
    return { name, dtype: t.type.dtype, shape, ...(description ? { description } : {}) };
  });
  for (const name of Object.keys(options.outputs ?? {})) {
    if (!graph.outputs.includes(name)) {
      throw new ModernBertError('BAD_ARGUMENT', `description given for "${name}", which is not a graph output`, {
        output: name,
      });
    }
  }
  return { inputs, outputs, metadata: options.metadata ?? {} };
}

function describeInput(name: string, dtype: DType, shape: readonly (number | string)[], o: InputOptions): FeatureInfo {
  const base = { name, dtype, ...(o.description ? { description: o.description } : {}) };
  const bad = (message: string): ModernBertError =>
    new ModernBertError('BAD_ARGUMENT', `input "${name}": ${message}`, { input: name });
  const fits = (s: readonly number[]): boolean =>
    s.length === shape.length &&
    s.every((d, i) => Number.isInteger(d) && d > 0 && (typeof shape[i] !== 'number' || shape[i] === d));
  if (o.enumeratedShapes && o.shapeRange) throw bad('give enumeratedShapes or shapeRange, not both');
  if (o.enumeratedShapes) {
    if (o.enumeratedShapes.length === 0) throw bad('enumeratedShapes is empty');
    for (const s of o.enumeratedShapes)
      if (!fits(s)) throw bad(`enumerated shape [${s.join(', ')}] does not fit [${shape.join(', ')}]`);
    const def = o.defaultShape ?? o.enumeratedShapes[0]!;
    if (!fits(def)) throw bad(`default shape [${def.join(', ')}] does not fit [${shape.join(', ')}]`);
    // flexible_shape_utils: the default shape first, duplicates dropped.
    const shapes: number[][] = [[...def]];
    for (const s of o.enumeratedShapes) if (!shapes.some((t) => sameShape(t, s))) shapes.push([...s]);
    return { ...base, shape: [...def], enumeratedShapes: shapes };
  }
  if (o.shapeRange) {
    if (o.shapeRange.length !== shape.length)
      throw bad(`shapeRange has ${o.shapeRange.length} axes, the input ${shape.length}`);
    o.shapeRange.forEach((r, i) => {
      const d = shape[i];
      const ok =
        r.lower > 0 &&
        (r.upper === -1 || r.upper >= r.lower) &&
        (typeof d !== 'number' || (r.lower === d && r.upper === d));
      if (!ok) throw bad(`shapeRange axis ${i} [${r.lower}, ${r.upper}] does not fit dimension ${String(d)}`);
    });
    const def = o.defaultShape ?? o.shapeRange.map((r) => r.lower);
    const inRange =
      def.length === shape.length &&
      def.every(
        (d, i) => d >= o.shapeRange![i]!.lower && (o.shapeRange![i]!.upper === -1 || d <= o.shapeRange![i]!.upper),
      );
    if (!inRange) throw bad(`default shape [${def.join(', ')}] is outside shapeRange`);
    return { ...base, shape: [...def], shapeRange: o.shapeRange.map((r) => ({ ...r })) };
  }
  if (o.defaultShape) throw bad('defaultShape needs enumeratedShapes or shapeRange');
  if (!shape.every((d) => typeof d === 'number')) {
    throw bad(`shape [${shape.join(', ')}] has symbolic dims: give enumeratedShapes or shapeRange`);
  }
  return { ...base, shape: shape as number[] };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A FeatureDescription message for a multi-array feature. */
export function featureToProto(f: FeatureInfo): FeatureDescriptionProto {
  const dataType = ARRAY_TYPES[f.dtype];
  if (!dataType) {
    throw new ModernBertError(
      'UNSUPPORTED',
      `model input/output "${f.name}" has dtype ${f.dtype}; Core ML multi-arrays take fp32, fp16, int32`,
      {
        feature: f.name,
        dtype: f.dtype,
      },
    );
  }
  const multiArrayType: NonNullable<NonNullable<FeatureDescriptionProto['type']>['multiArrayType']> = {
    shape: [...f.shape],
    dataType,
  };
  if (f.enumeratedShapes)
    multiArrayType.enumeratedShapes = { shapes: f.enumeratedShapes.map((s) => ({ shape: [...s] })) };
  if (f.shapeRange) {
    multiArrayType.shapeRange = { sizeRanges: f.shapeRange.map((r) => ({ lowerBound: r.lower, upperBound: r.upper })) };
  }
  return { name: f.name, ...(f.description ? { shortDescription: f.description } : {}), type: { multiArrayType } };
}

/** Reads a FeatureDescription; features other than multi-arrays are UNSUPPORTED. */
export function featureFromProto(p: FeatureDescriptionProto, where: string): FeatureInfo {
  const name = p.name ?? '';
  const array = p.type?.multiArrayType;
  if (!array) {
    throw new ModernBertError(
      'UNSUPPORTED',
      `${where} "${name}" has feature type ${p.type?.Type ?? 'none'}; only multi-arrays are supported`,
      {
        feature: name,
        kind: p.type?.Type,
      },
    );
  }
  const dtype = (Object.keys(ARRAY_TYPES) as DType[]).find((d) => ARRAY_TYPES[d] === array.dataType);
  if (!dtype) {
    throw new ModernBertError(
      'UNSUPPORTED',
      `${where} "${name}" has multi-array type ${array.dataType ?? 'INVALID_ARRAY_DATA_TYPE'}`,
      {
        feature: name,
      },
    );
  }
  const f: FeatureInfo = { name, dtype, shape: [...(array.shape ?? [])] };
  if (p.shortDescription) f.description = p.shortDescription;
  if (array.enumeratedShapes)
    f.enumeratedShapes = (array.enumeratedShapes.shapes ?? []).map((s) => [...(s.shape ?? [])]);
  if (array.shapeRange) {
    f.shapeRange = (array.shapeRange.sizeRanges ?? []).map((r) => ({
      lower: r.lowerBound ?? 0,
      upper: r.upperBound ?? 0,
    }));
  }
  return f;
}

/** A Metadata message; empty fields are left out (proto3 omits them anyway). */
export function metadataToProto(m: ModelMetadata): MetadataProto {
  const p: MetadataProto = {};
  if (m.shortDescription) p.shortDescription = m.shortDescription;
  if (m.versionString) p.versionString = m.versionString;
  if (m.author) p.author = m.author;
  if (m.license) p.license = m.license;
  if (m.userDefined && Object.keys(m.userDefined).length > 0) p.userDefined = { ...m.userDefined };
  return p;
}

/** Reads a Metadata message (absent fields stay absent). */
export function metadataFromProto(p: MetadataProto | undefined): ModelMetadata {
  const m: ModelMetadata = {};
  if (p?.shortDescription) m.shortDescription = p.shortDescription;
  if (p?.versionString) m.versionString = p.versionString;
  if (p?.author) m.author = p.author;
  if (p?.license) m.license = p.license;
  if (p?.userDefined && Object.keys(p.userDefined).length > 0) m.userDefined = { ...p.userDefined };
  return m;
}

/** Symbols of the symbolic dims in program order (function inputs, then op outputs): stored so the reader can name unknown dims. */
function symbolList(graph: Graph): string[] {
  const dims = [
    ...graph.inputs.map((v) => v.type.shape),
    ...graph.ops.flatMap((op) => op.outputs.map((o) => o.type.shape)),
  ];
  return dims.flat().filter((d): d is string => typeof d === 'string');
}

/** Metadata plus our reserved keys (symbol names, taps of the default function). */
export function metadataWithExtras(metadata: ModelMetadata, graphs: readonly Graph[]): ModelMetadata {
  const userDefined = { ...(metadata.userDefined ?? {}) };
  for (const key of Object.keys(userDefined)) {
    if (key.startsWith(RESERVED_METADATA_PREFIX)) {
      throw new ModernBertError('BAD_ARGUMENT', `metadata key "${key}" is reserved for modernbert-ane`, { key });
    }
  }
  const perGraph = graphs.map(symbolList);
  const all = perGraph.flat();
  // One symbol throughout (the usual sequence length S) is stored once; a list is per function, so only one function's.
  if (all.length > 0 && all.every((s) => s === all[0])) userDefined[SYMBOLS_KEY] = JSON.stringify([all[0]]);
  else if (graphs.length === 1 && all.length > 0) userDefined[SYMBOLS_KEY] = JSON.stringify(all);
  if (graphs[0]!.taps.size > 0) userDefined[TAPS_KEY] = JSON.stringify(Object.fromEntries(graphs[0]!.taps));
  return { ...metadata, ...(Object.keys(userDefined).length > 0 ? { userDefined } : {}) };
}
