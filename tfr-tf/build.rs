//! Compiles the TensorFlow-compatible protos with protox (a Rust protobuf compiler): no `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/graph.proto", "proto/event.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/graph.proto");
    println!("cargo:rerun-if-changed=proto/event.proto");
    Ok(())
}
