//! Mutations: a byte-level mutator for any input (bit flips, interesting values, inserts,
//! deletes, repeated chunks, splices, dictionary tokens) and a protobuf-aware one that
//! parses the wire format generically and changes one field's value, drops, repeats or
//! renumbers a field, so encoded requests stay mostly well-formed and reach validation.

/// A small, fast, seedable generator (splitmix64); no OS randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Integers worth trying in any width.
const INTERESTING: [u64; 18] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 53,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Doubles worth trying: the edges of every bound the master checks.
const INTERESTING_F64: [f64; 26] = [
    0.0,
    -0.0,
    f64::NAN,
    -f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MIN_POSITIVE,
    5e-324,
    -1.0,
    0.0005,
    0.001,
    0.0009999,
    0.01,
    0.00999,
    1.0,
    31.9999,
    32.0,
    1000.0,
    1000.0001,
    1e12,
    1.0000000001e12,
    1e15,
    31_536_000.0,
    31_536_000.001,
    f64::MAX,
    1.8446744073709552e19,
];

/// A byte-level mutation of `input`, stacking 1 to 8 changes; `other` is another corpus
/// entry to splice from; `dict` holds tokens of the target's input language.
pub fn mutate_bytes(
    input: &[u8],
    other: &[u8],
    dict: &[&[u8]],
    rng: &mut Rng,
    max_len: usize,
) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        mutate_once(&mut out, other, dict, rng);
        if out.len() > max_len {
            out.truncate(max_len);
        }
    }
    out
}

fn mutate_once(out: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut Rng) {
    let len = out.len();
    match rng.below(15) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        // A random byte.
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = rng.next_u64() as u8;
        }
        // An interesting byte.
        2 if len > 0 => {
            let i = rng.below(len);
            out[i] = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xfe, 0xff, b'0', b'9', b'-', b'.']);
        }
        // Nudge a byte.
        3 if len > 0 => {
            let i = rng.below(len);
            let d = rng.below(35) as u8;
            out[i] = if rng.one_in(2) {
                out[i].wrapping_add(d + 1)
            } else {
                out[i].wrapping_sub(d + 1)
            };
        }
        // Insert random bytes.
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
        // Delete a range.
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            out.drain(at..at + n);
        }
        // Overwrite with an interesting integer (1, 2, 4 or 8 bytes, either endianness).
        6 if len > 0 => {
            let bytes = interesting_int(rng);
            let at = rng.below(len);
            let n = bytes.len().min(len - at);
            out[at..at + n].copy_from_slice(&bytes[..n]);
        }
        // Insert an interesting integer or double.
        7 => {
            let bytes = if rng.one_in(2) {
                interesting_int(rng)
            } else {
                rng.pick(&INTERESTING_F64).to_le_bytes().to_vec()
            };
            let at = rng.below(len + 1);
            out.splice(at..at, bytes);
        }
        // Repeat a chunk.
        8 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let chunk = out[at..at + n].to_vec();
            let most = if rng.one_in(8) { 256 } else { 8 };
            let times = 1 + rng.below(most);
            let mut rep = Vec::with_capacity(n * times);
            for _ in 0..times {
                rep.extend_from_slice(&chunk);
            }
            out.splice(at..at, rep);
        }
        // Splice: our head, the other's tail.
        9 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        // Insert a chunk of the other.
        10 if !other.is_empty() => {
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(64));
            let at = rng.below(len + 1);
            out.splice(at..at, other[from..from + n].iter().copied());
        }
        // Insert a dictionary token.
        11 | 12 if !dict.is_empty() => {
            let token = *rng.pick(dict);
            let at = rng.below(len + 1);
            if rng.one_in(2) || len == 0 {
                out.splice(at..at, token.iter().copied());
            } else {
                let n = token.len().min(len - at.min(len));
                out.splice(at..at + n, token.iter().copied());
            }
        }
        // Swap two bytes.
        13 if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            out.swap(i, j);
        }
        // Truncate.
        14 if len > 0 => {
            out.truncate(rng.below(len));
        }
        _ => {
            out.push(rng.next_u64() as u8);
        }
    }
}

fn interesting_int(rng: &mut Rng) -> Vec<u8> {
    let v = *rng.pick(&INTERESTING);
    let width = *rng.pick(&[1usize, 2, 4, 8]);
    let bytes = if rng.one_in(2) {
        v.to_le_bytes()
    } else {
        v.to_be_bytes()
    };
    if rng.one_in(2) {
        bytes[..width].to_vec()
    } else {
        bytes[8 - width..].to_vec()
    }
}

// ----- protobuf wire format -----

/// One field of a protobuf message as the wire has it.
#[derive(Clone, Debug, PartialEq)]
pub enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

/// A message as its fields in wire order: (field number, value).
pub type Fields = Vec<(u32, Wire)>;

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fields of `buf`, or None when it is not a well-formed message.
pub fn parse_fields(buf: &[u8]) -> Option<Fields> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let (num, wt) = ((key >> 3) as u32, key & 7);
        if num == 0 {
            return None;
        }
        let value = match wt {
            0 => Wire::Varint(read_varint(buf, &mut pos)?),
            1 => {
                let b = buf.get(pos..pos + 8)?;
                pos += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().ok()?))
            }
            2 => {
                let n = read_varint(buf, &mut pos)? as usize;
                let b = buf.get(pos..pos.checked_add(n)?)?;
                pos += n;
                Wire::Bytes(b.to_vec())
            }
            5 => {
                let b = buf.get(pos..pos + 4)?;
                pos += 4;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().ok()?))
            }
            _ => return None,
        };
        fields.push((num, value));
    }
    Some(fields)
}

/// The wire encoding of `fields`.
pub fn encode_fields(fields: &[(u32, Wire)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (num, value) in fields {
        let wt = match value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        write_varint(&mut out, ((*num as u64) << 3) | wt);
        match value {
            Wire::Varint(v) => write_varint(&mut out, *v),
            Wire::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Wire::Bytes(b) => {
                write_varint(&mut out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Wire::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out
}

/// `buf` with the fields of every (nested) message sorted: two encodings of one message
/// that differ only in field order (a map's entries come out in hash order) become equal.
pub fn canonical(buf: &[u8]) -> Vec<u8> {
    let Some(mut fields) = parse_fields(buf) else {
        return buf.to_vec();
    };
    for (_, value) in &mut fields {
        if let Wire::Bytes(b) = value {
            *b = canonical(b);
        }
    }
    let mut encoded: Vec<(u32, Vec<u8>)> = fields
        .into_iter()
        .map(|(num, v)| (num, encode_fields(&[(num, v)])))
        .collect();
    encoded.sort();
    encoded.into_iter().flat_map(|(_, bytes)| bytes).collect()
}

/// A protobuf-aware mutation of the message `input`: one field, at any depth, gets an
/// interesting value or a token of `dict`, or is dropped, repeated, renumbered, or copied
/// from `other`. None when `input` does not parse as a message.
pub fn mutate_proto(
    input: &[u8],
    other: &[u8],
    dict: &[&[u8]],
    rng: &mut Rng,
    max_len: usize,
) -> Option<Vec<u8>> {
    let mut fields = parse_fields(input)?;
    let donors = parse_fields(other).unwrap_or_default();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        mutate_fields(&mut fields, &donors, dict, rng, 0);
    }
    let out = encode_fields(&fields);
    (out.len() <= max_len).then_some(out)
}

fn mutate_fields(
    fields: &mut Fields,
    donors: &Fields,
    dict: &[&[u8]],
    rng: &mut Rng,
    depth: usize,
) {
    if fields.is_empty() || rng.one_in(8) {
        // Add a field: a donor's, or a small one with a likely number.
        let field = if !donors.is_empty() && rng.one_in(2) {
            rng.pick(donors).clone()
        } else {
            let num = 1 + rng.below(8) as u32;
            let value = match rng.below(3) {
                0 => Wire::Varint(*rng.pick(&INTERESTING)),
                1 => Wire::Fixed64(rng.pick(&INTERESTING_F64).to_bits()),
                _ => Wire::Bytes(rng.pick(dict).to_vec()),
            };
            (num, value)
        };
        let at = rng.below(fields.len() + 1);
        fields.insert(at, field);
        return;
    }
    let i = rng.below(fields.len());
    match rng.below(12) {
        0 => {
            fields.remove(i);
        }
        1 => {
            let f = fields[i].clone();
            let times = if rng.one_in(6) { 1 + rng.below(200) } else { 1 };
            for _ in 0..times {
                fields.insert(i, f.clone());
            }
        }
        2 => {
            let num = &mut fields[i].0;
            *num = match rng.below(3) {
                0 => num.saturating_add(1),
                1 => num.saturating_sub(1).max(1),
                _ => 1 + rng.below(16) as u32,
            };
        }
        3 if fields.len() > 1 => {
            let j = rng.below(fields.len());
            fields.swap(i, j);
        }
        _ => {
            let depth_ok = depth < 6;
            let value = &mut fields[i].1;
            match value {
                Wire::Varint(v) => {
                    *v = match rng.below(4) {
                        0 => *rng.pick(&INTERESTING),
                        1 => v.wrapping_add(1 + rng.below(4) as u64),
                        2 => v.wrapping_sub(1 + rng.below(4) as u64),
                        _ => rng.below(20) as u64,
                    }
                }
                Wire::Fixed64(v) => {
                    *v = if rng.one_in(3) {
                        *rng.pick(&INTERESTING)
                    } else {
                        rng.pick(&INTERESTING_F64).to_bits()
                    }
                }
                Wire::Fixed32(v) => *v = *rng.pick(&INTERESTING) as u32,
                Wire::Bytes(b) => {
                    let nested = if depth_ok && rng.below(3) > 0 {
                        parse_fields(b).filter(|f| !f.is_empty())
                    } else {
                        None
                    };
                    match nested {
                        Some(mut inner) => {
                            mutate_fields(&mut inner, donors, dict, rng, depth + 1);
                            *b = encode_fields(&inner);
                        }
                        None => mutate_text(b, dict, rng),
                    }
                }
            }
        }
    }
}

/// A string or bytes field's new value.
fn mutate_text(b: &mut Vec<u8>, dict: &[&[u8]], rng: &mut Rng) {
    match rng.below(6) {
        0 | 1 if !dict.is_empty() => *b = rng.pick(dict).to_vec(),
        2 => b.clear(),
        3 => {
            let c = *rng.pick(&[b'a', b'x', b'/', b'.', b'\n', 0x1b, b' ', 0xff]);
            let n = *rng.pick(&[2usize, 32, 33, 255, 256, 1024, 1025, 2000]);
            *b = vec![c; n];
        }
        _ => {
            let copy = b.clone();
            *b = mutate_bytes(&copy, &[], dict, rng, 4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::v1 as pb;
    use prost::Message;

    #[test]
    fn wire_parse_and_encode_round_trip() {
        let msg = pb::AcceptRequest {
            framework_id: "f1".into(),
            offer_ids: vec!["o1".into(), "o2".into()],
            tasks: vec![pb::TaskInfo {
                task_id: "t1".into(),
                resources: vec![pb::Resource {
                    name: "cpus".into(),
                    role: String::new(),
                    value: Some(pb::resource::Value::Scalar(0.5)),
                }],
                ..Default::default()
            }],
            filters: Some(pb::Filters {
                refuse_seconds: Some(1.0),
            }),
        };
        let bytes = msg.encode_to_vec();
        let fields = parse_fields(&bytes).unwrap();
        assert_eq!(encode_fields(&fields), bytes);
    }

    #[test]
    fn mutations_stay_within_the_length() {
        let mut rng = Rng::new(7);
        let mut x = b"cpus:1;mem:2".to_vec();
        for _ in 0..10_000 {
            let other = x.clone();
            x = mutate_bytes(&x, &other, &[b"ports"], &mut rng, 64);
            assert!(x.len() <= 64);
        }
    }
}
