//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "agora/v1/raft.proto",
        "agora/v1/master.proto",
        "agora/v1/agent.proto",
        "agora/v1/executor.proto",
        "agora/v1/scheduler.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
