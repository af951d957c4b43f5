//! Generates the tonic server traits of `sessiond.v1` against the messages
//! of the `sessiond-api` crate (`crates/sessiond-api`, which also holds the
//! clients and the descriptor set), with sessiond's own codec. protox
//! compiles `proto/` (pure Rust, no `protoc` needed). Passes the build's
//! profile and target to the code as `BUILD_PROFILE` and `BUILD_TARGET`
//! (GetServerInfo answers them).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sessiond/v1/sessiond.proto", "proto/sessiond/v1/messages.proto"];
    let descriptors = protox::compile(protos, ["proto"])?;

    // sessiond's codec answers undecodable requests without the decoder's
    // words (src/grpc/codec.rs). The messages are the API crate's.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".sessiond.v1", "::sessiond_api::v1")
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(descriptors)?;

    // Cargo sets both for every build script.
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
