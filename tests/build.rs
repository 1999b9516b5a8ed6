//! Compiles the client side of KurrentDB's `Streams` service from the gater's copy of
//! the protocol (`gater/proto/kurrent`), for `reckon-bench`'s gRPC path: a KurrentDB
//! client's appends through the gater's front door, measured beside tarpc's. protox
//! parses the files in Rust, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../gater/proto/kurrent";
    println!("cargo:rerun-if-changed={dir}");
    let descriptors = protox::compile(["streams.proto"], [dir])?;
    let mut messages = tonic_prost_build::Config::new();
    messages.disable_comments(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(true)
        .disable_comments(["."])
        .include_file("kurrent_proto.rs")
        .compile_fds_with_config(descriptors, messages)?;
    Ok(())
}
