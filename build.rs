//! Compiles `proto/` with protox (pure Rust, no `protoc` needed) and
//! generates the tonic server and client code, plus the descriptor set that
//! server reflection serves. Passes the build's profile and target to the
//! code as `BUILD_PROFILE` and `BUILD_TARGET`
//! (GetServerInfo answers them).

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sessiond/v1/sessiond.proto", "proto/sessiond/v1/messages.proto"];
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is set by cargo")?);
    let descriptor_path = out_dir.join("sessiond_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    // sessiond's codec answers undecodable requests without the decoder's
    // words (src/grpc/codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(descriptors)?;

    // The echo baseline of the `sessiond-bench` binary, generated apart so
    // that it stays out of sessiond's own descriptor set and reflection.
    let bench = protox::compile(["proto/sessiond/bench/v1/echo.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(bench)?;

    // Cargo sets both for every build script.
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
