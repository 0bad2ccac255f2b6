//! The engine and model layer, in process, no server: every gate's gradient against
//! central differences, that oracle itself, known values computed by hand, whole nets,
//! the optimizers' update rules, the checkpoint codec, the wire `Tensor` codec, the f32
//! fast math against libm, and the scan for the first non-finite element.
mod checkpoint;
mod fastmath;
mod gates;
mod gradcheck;
mod known_values;
mod nets;
mod optimizers;
mod pb_tensor;
mod scalar;
