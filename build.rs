//! Compiles the protos with protox (pure Rust, so no system `protoc` is needed) and writes
//! the encoded descriptor set that server reflection serves (`backprop_descriptor.bin`).
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/backprop/v1/backprop.proto"];
    let out = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(protos)?;
    std::fs::write(
        out.join("backprop_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Tensor is written by hand (src/pb/tensor.rs) so a batch decodes in one pass; the
    // codec (src/pb/codec.rs) encodes each message into a buffer of exactly its size.
    tonic_prost_build::configure()
        .extern_path(".backprop.v1.Tensor", "crate::pb::tensor::Tensor")
        .codec_path("crate::pb::codec::SizedCodec")
        // Checkpoint chunks are slices of one encoded file: Bytes shares it, no copy.
        .bytes(".backprop.v1.CheckpointChunk.data")
        // A dataset chunk's rows are decoded from the received buffer without a copy.
        .bytes(".backprop.v1.DatasetChunk.x")
        // Label maps as sorted maps: a message encodes to the same bytes every time, and
        // answers list labels in key order.
        .btree_map(".")
        .compile_fds(compiler.file_descriptor_set())?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
