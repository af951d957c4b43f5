//! Compiles the repository's `proto/` with protox (pure Rust, no `protoc`)
//! into the `sessiond.v1` messages and tonic clients, and the descriptor set
//! that server reflection and the HTTP/JSON face read.

use std::path::PathBuf;

use prost::Message as _;

const PROTOS: [&str; 2] = ["../../proto/sessiond/v1/sessiond.proto", "../../proto/sessiond/v1/messages.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTOS, ["../../proto"])?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is set by cargo")?);
    std::fs::write(out_dir.join("sessiond_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=../../proto/sessiond/v1");
    Ok(())
}
