//! Compiles Agora's Mesos v1 .proto files with protox (pure Rust, no system protoc), generates
//! the prost types with prost-build, then the serde impls of Mesos' JSON mapping with
//! pbjson-build, adjusted where Mesos' mapping differs from proto3's canonical one.

use std::path::{Path, PathBuf};

use prost::Message as _;

const FILES: [&str; 4] = [
    "mesos/v1/mesos.proto",
    "mesos/v1/scheduler/scheduler.proto",
    "mesos/v1/executor/executor.proto",
    "mesos/v1/master/master.proto",
];

const PACKAGES: [&str; 4] = [
    "mesos.v1",
    "mesos.v1.scheduler",
    "mesos.v1.executor",
    "mesos.v1.master",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(FILES, ["."])?;
    let encoded = descriptors.encode_to_vec();

    prost_build::Config::new()
        // `prost::Name` on every message: the JSON helpers name the type in errors.
        .enable_type_names()
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        // Mesos writes and reads the field names as in the .proto (snake_case).
        .preserve_proto_field_names()
        // Mesos clients send fields Agora does not model: skip them.
        .ignore_unknown_fields()
        .build(&[".mesos"])?;

    for package in PACKAGES {
        mesos_json_dialect(&out_dir.join(format!("{package}.serde.rs")))?;
    }
    Ok(())
}

/// Rewrites pbjson's output where Mesos' JSON differs from proto3's canonical mapping:
///
/// - 64-bit integers are written as JSON numbers (proto3 writes strings). Reading still accepts
///   both, as Mesos does.
/// - `bytes` are read with Mesos' leniency (padding optional, non-zero trailing bits and
///   whitespace accepted; see `json::Base64Bytes`).
/// - Numbers are read by `json::Number`, whose errors say what was expected.
/// - Errors about missing or duplicate fields name the field as written in the .proto
///   (`framework_id`), not in lowerCamelCase (`frameworkId`).
///
/// Fails the build if pbjson emits a stringified integer in a shape this does not handle, so a
/// new .proto field or a pbjson upgrade cannot silently bring strings back.
fn mesos_json_dialect(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let code = std::fs::read_to_string(path)?;
    let code = unwrap_calls(&code, "ToString::to_string(", ").as_str()");
    let code = code.replace(
        ".map(ToString::to_string).collect::<Vec<_>>()",
        ".collect::<Vec<_>>()",
    );
    let code = code
        .replace(
            "::pbjson::private::BytesDeserialize<_>",
            "crate::json::Base64Bytes<_>",
        )
        .replace(
            "::pbjson::private::NumberDeserialize<_>",
            "crate::json::Number<_>",
        );
    let code = snake_case_field_errors(&code, "missing_field(\"");
    let code = snake_case_field_errors(&code, "duplicate_field(\"");
    if code.contains("to_string") {
        return Err(format!(
            "{}: pbjson stringifies an integer in a form build.rs does not rewrite",
            path.display()
        )
        .into());
    }
    std::fs::write(path, code)?;
    Ok(())
}

/// Replaces every `{open}ARG{close}` by `ARG` (ARG holds balanced parentheses).
fn unwrap_calls(code: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(i) if after[i..].starts_with(close) => {
                out.push_str(&after[..i]);
                rest = &after[i + close.len()..];
            }
            // Not the shape we rewrite: keep it, and the final check fails the build.
            _ => {
                out.push_str(open);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Converts the lowerCamelCase name that follows each `marker` to snake_case.
fn snake_case_field_errors(code: &str, marker: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(start) = rest.find(marker) {
        let name_start = start + marker.len();
        out.push_str(&rest[..name_start]);
        let after = &rest[name_start..];
        let name_len = after.find('"').unwrap_or(0);
        for c in after[..name_len].chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}
