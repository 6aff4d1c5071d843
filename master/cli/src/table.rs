//! Plain-text tables, and formatting of resources and task states, for the CLI.

use agora_proto::v1 as pb;

/// Prints rows under headers, columns padded to their widest cell.
pub fn print(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Resources in Mesos text: `cpus:4;mem:8192;ports:[31000-32000]`.
pub fn resources(items: &[pb::Resource]) -> String {
    items
        .iter()
        .map(|r| {
            let name = if r.role.is_empty() {
                r.name.clone()
            } else {
                format!("{}({})", r.name, r.role)
            };
            let value = match &r.value {
                Some(pb::resource::Value::Scalar(x)) => format!("{x}"),
                Some(pb::resource::Value::Ranges(rs)) => format!(
                    "[{}]",
                    rs.range
                        .iter()
                        .map(|r| format!("{}-{}", r.begin, r.end))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => "?".into(),
            };
            format!("{name}:{value}")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A task state from the wire by its Mesos name (`TASK_RUNNING`), through the domain
/// [`agora_driver::TaskState`]; a value it cannot map is shown as what is wrong with it.
pub fn task_state(value: i32) -> String {
    match agora_driver::convert::task_state_from_proto(value) {
        Ok(state) => state.to_string(),
        Err(e) => format!("? ({e})"),
    }
}
