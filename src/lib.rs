pub mod pb {
    tonic::include_proto!("backprop.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("backprop_descriptor");
}
