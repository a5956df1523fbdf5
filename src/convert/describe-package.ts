// What a package says of itself: its inputs and output in words, and the metadata (source model, head,
// labels, weight form, lengths) that readers of the package (inspect, predict, the Swift helper) rely on.

import { basename, join, resolve } from 'node:path';
import type { DescriptionOptions } from '../coreml/description.js';
import { META } from '../coreml/package-info.js';
import type { FidelityReport } from '../eval/fidelity.js';
import type { LearnReport } from '../learn/learned.js';
import { readJson, type Checkpoint } from '../model/checkpoint.js';
import { decoderChunks, MAX_CHANNELS } from '../model/decoder.js';
import type { OutputHead } from '../model/options.js';
import type { Variant } from '../model/variants.js';
import { VERSION } from '../version.js';
import type { ConversionPlan } from './write-package.js';

const HEAD_OUTPUT: Record<OutputHead, string> = {
  mlm: 'logits',
  tokcls: 'logits',
  seqcls: 'logits',
  embedding: 'embedding',
  none: 'hidden_states',
};

/**
 * The model's name for the metadata, never a path of the converting machine: the Hub id it was opened by
 * (or whose cache snapshot it is), else the config's `_name_or_path` when it is a Hub id ("org/name"), else
 * the checkpoint folder's own name.
 */
export function sourceName(ckpt: Checkpoint): string {
  if (ckpt.source) return ckpt.source.id;
  const raw = readJson(join(ckpt.dir, 'config.json')) as { _name_or_path?: unknown };
  const id = raw._name_or_path;
  if (typeof id === 'string' && /^\w[\w.-]*(\/\w[\w.-]*)?$/.test(id)) return id;
  return basename(resolve(ckpt.dir));
}

// model/decoder.ts: K chunks of `rows` rows on the H axis.
function splitLogitsDescription(V: number): string {
  const { K, rows } = decoderChunks(V);
  return `Masked-LM logits, vocab ${V} split into ${K} channel chunks for the Neural Engine, (1, ${rows}, ${K}, S): token v at [0, v % ${rows}, floor(v / ${rows}), s]`;
}

/** The package's description: its inputs, its output and the metadata that names what it holds. */
export function describePackage(
  ckpt: Checkpoint,
  o: ConversionPlan,
  variant: Variant,
  head: OutputHead,
): DescriptionOptions {
  const c = ckpt.config;
  const shapes = o.seqLens.map((s) => [1, s]);
  const enumerated = o.seqLens.length > 1;
  const inputs: DescriptionOptions['inputs'] = {
    input_ids: {
      description:
        o.pack !== undefined
          ? `Token ids (int32, [1, S]): up to ${o.pack} texts one after another, padded at the end (segment_ids 0 marks padding)`
          : o.maskFrom === 'ids'
            ? `Token ids (int32, [1, S]), padded at the end with pad_token_id ${c.padTokenId}, which the model treats as padding`
            : `Token ids (int32, [1, S]), padded at the end (any id; the mask marks padding)`,
      ...(enumerated ? { enumeratedShapes: shapes } : {}),
    },
  };
  if (o.pack !== undefined) {
    inputs.segment_ids = {
      description: `Which text each token belongs to (int32, [1, S]): 1..${o.pack}, each text one contiguous run, 0 = padding`,
    };
  }
  if (o.maskFrom === 'input') {
    inputs.mask = {
      description: 'Additive attention mask, (batch, key, 1, query): 0 = attend, -10000 = padding key',
      ...(enumerated ? { enumeratedShapes: o.seqLens.map((s) => [1, s, 1, s]) } : {}),
    };
  }
  const outDescription: Record<OutputHead, string> = {
    mlm:
      c.vocabSize <= MAX_CHANNELS
        ? `Masked-LM logits, (1, vocab ${c.vocabSize}, 1, S): column s scores every token for position s`
        : splitLogitsDescription(c.vocabSize),
    tokcls: `Token-classification logits, (1, labels ${c.labels.length}, 1, S)`,
    seqcls: `Sequence-classification logits, (1, ${o.pack === undefined ? '' : `texts ${o.pack}, `}labels ${c.labels.length}): ${c.labels.join(', ')}`,
    embedding: `Sentence embedding, (1, ${o.pack === undefined ? '' : `texts ${o.pack}, `}${c.hidden})${ckpt.embedding?.normalize ? ', L2-normalised' : ''}${o.pack === undefined ? '' : ', row k for segment k + 1'}`,
    none: `Last hidden state, (1, ${c.hidden}, 1, S)`,
  };
  const rotation = variant.name;
  return {
    inputs,
    outputs: { [HEAD_OUTPUT[head]]: { description: outDescription[head] } },
    metadata: {
      shortDescription: `${c.architecture} converted for the Apple Neural Engine by modernbert-ane (${rotation}, ${o.weights} weights)`,
      author: 'modernbert-ane',
      versionString: VERSION,
      userDefined: {
        [META.converter]: `modernbert-ane ${VERSION}`,
        [META.source]: sourceName(ckpt),
        ...(ckpt.source ? { [META.sourceCommit]: ckpt.source.commit } : {}),
        [META.architecture]: c.architecture,
        [META.head]: head,
        [META.labels]: JSON.stringify(c.labels),
        [META.specialIds]: JSON.stringify({
          pad: c.padTokenId,
          cls: c.clsTokenId,
          sep: c.sepTokenId,
          mask: o.maskTokenId ?? null,
        }),
        [META.seqLens]: o.seqLens.join(','),
        [META.rotation]: !o.fold
          ? 'none (not folded)'
          : o.rotation === 'none'
            ? 'none (folded)'
            : `${o.rotation} (seed ${o.seed}${o.learnReport ? `, kept ${o.learnReport.chosen}` : ''})`,
        [META.norm]: o.fold
          ? `folded, ${o.norm === 'l2' ? 'l2-norm RMSNorm (overflow-safe)' : 'x*x RMSNorm'}`
          : 'LayerNorm',
        [META.weights]: o.compress ? `${o.compress.mode} (compressed; tables and scales ${o.weights})` : o.weights,
        [META.numLayers]: String(c.numLayers),
        ...(o.pack === undefined ? {} : { [META.pack]: String(o.pack) }),
      },
    },
  };
}

/** Adds the conversion's reports (fidelity, rotation learning, compression) to a description's metadata. */
export function withReports(
  d: DescriptionOptions,
  reports: { fidelity: FidelityReport | null; learning?: LearnReport; compression?: unknown },
): DescriptionOptions {
  const meta = d.metadata!.userDefined!;
  if (reports.fidelity) meta[META.fidelity] = JSON.stringify(reports.fidelity);
  if (reports.learning) meta[META.rotationLearning] = JSON.stringify(reports.learning);
  if (reports.compression) meta[META.compression] = JSON.stringify(reports.compression);
  return d;
}
