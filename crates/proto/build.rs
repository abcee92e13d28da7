//! Compiles the protobuf schema with `protox` (a pure-Rust protobuf
//! compiler), so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "proto/cocoon/v1/cocoon.proto";
    println!("cargo:rerun-if-changed={schema}");
    let fds = protox::compile([schema], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
