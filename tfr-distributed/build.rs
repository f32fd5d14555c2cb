//! Compiles the protos with protox (a Rust protobuf compiler): no `protoc` needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/worker.proto", "proto/master.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Chunks are slices of one encoded buffer: no copy per chunk on the sending side.
        .bytes(".tfr.worker.RecvTensorChunk.data")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/worker.proto");
    println!("cargo:rerun-if-changed=proto/master.proto");
    Ok(())
}
