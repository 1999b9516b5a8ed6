//! Compiles the KurrentDB v1 client protocol (`proto/kurrent/*.proto`) into Rust for
//! the gater's gRPC front door ([`reckon_gater::kurrent`]). protox parses the files
//! in Rust, so a build needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: [&str; 5] = [
        "streams.proto",
        "serverfeatures.proto",
        "gossip.proto",
        "persistent.proto",
        "shared.proto",
    ];
    println!("cargo:rerun-if-changed=proto/kurrent");
    let descriptors = protox::compile(FILES, ["proto/kurrent"])?;
    // The protos' comments are not rustdoc (their `[a][b]` links do not resolve).
    let mut messages = tonic_prost_build::Config::new();
    messages.disable_comments(["."]);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Methods we do not serve answer UNIMPLEMENTED at once, not a hang.
        .generate_default_stubs(true)
        .disable_comments(["."])
        .include_file("kurrent_proto.rs")
        .compile_fds_with_config(descriptors, messages)?;
    Ok(())
}
