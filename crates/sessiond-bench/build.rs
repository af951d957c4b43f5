//! Generates the echo baseline (`proto/sessiond/bench/v1/echo.proto`, kept
//! beside sessiond's protos so that buf lints it too) apart from sessiond's
//! API: it stays out of sessiond's descriptor set and reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let echo = protox::compile(["../../proto/sessiond/bench/v1/echo.proto"], ["../../proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(echo)?;
    println!("cargo:rerun-if-changed=../../proto/sessiond/bench");
    Ok(())
}
