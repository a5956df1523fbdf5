// Rotation and norm folding: the public surface of src/rotation.

export { DenseRotation } from './dense-rotation.js';
export { FINAL_UNROTATE, foldWeights, LAYER0_RESIDUAL, TOK_EMBEDDINGS, type FoldConfig } from './fold.js';
export { fwht, fwhtColumns, fwhtRows, hadamardMatrix, hadamardPlan, type HadamardPlan } from './hadamard.js';
export { HadamardRotation } from './hadamard-rotation.js';
export { IdentityRotation, type Matrix, type Rotation } from './rotation.js';
