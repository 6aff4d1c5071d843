//! Mesos' RecordIO framing: each record is its length in bytes as ASCII decimal digits, a line
//! feed, then exactly that many bytes (`records = *(1*DIGIT LF data)`). Mesos streams events
//! this way (`Content-Type: application/recordio` or the JSON/protobuf type of the stream), each
//! record one JSON or protobuf-encoded `Event`.
//!
//! [`encode`] frames one record; [`Decoder`] takes the stream in whatever chunks the network
//! delivers (a record split across chunks, many records in one chunk, the length itself split)
//! and yields complete records. The decoder is bounded: a record longer than its maximum is an
//! error as soon as the length says so, and it only ever buffers bytes that have arrived, so a
//! peer announcing a huge length cannot make it allocate. Pure code: no I/O, no async.

use std::fmt;

/// The decoder's default maximum record size: 64 MiB (an operator API `SUBSCRIBED` event holds
/// the whole cluster's state). Pick a bound fitting the stream with [`Decoder::new`].
pub const DEFAULT_MAX_RECORD_SIZE: usize = 64 * 1024 * 1024;

/// The most digits a length may have: as many as `u64::MAX` has. Mesos reads the length as a
/// `uint64`; more digits than this (leading zeros included) are refused.
pub const MAX_LENGTH_DIGITS: usize = 20;

/// Frames one record: its length, a line feed, the record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + MAX_LENGTH_DIGITS + 1);
    encode_into(record, &mut out);
    out
}

/// Appends the framing of one record to `out`.
pub fn encode_into(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
}

/// Why a RecordIO stream could not be decoded. Offsets count bytes from the start of the
/// stream. After an error the stream is unusable: the decoder returns the same error again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte that is neither a digit nor the line feed ending the length.
    NonDigitLength {
        /// The offending byte.
        byte: u8,
        /// Where it is in the stream.
        offset: u64,
    },
    /// A line feed with no digits before it.
    EmptyLength {
        /// Where the line feed is in the stream.
        offset: u64,
    },
    /// More than [`MAX_LENGTH_DIGITS`] digits.
    LengthTooLong {
        /// Where the digit past the limit is in the stream.
        offset: u64,
    },
    /// The length exceeds the decoder's maximum record size. Reported as soon as the digits read
    /// so far exceed it, so `length` is a lower bound of the announced length.
    RecordTooLarge {
        /// The length read so far, or `u64::MAX` if the digits exceed it.
        length: u64,
        /// The decoder's maximum record size.
        max: usize,
        /// Where the digit that crossed the limit is in the stream.
        offset: u64,
    },
    /// The stream ended inside a record (see [`Decoder::finish`]).
    Truncated {
        /// Digits of a length read before the end, or the bytes of the record received.
        received: usize,
        /// The record's length, if the length had been read in full.
        expected: Option<usize>,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonDigitLength { byte, offset } => write!(
                f,
                "RecordIO: byte {:?} at offset {offset} in a record length (expected digits, then a line feed)",
                char::from(*byte)
            ),
            Self::EmptyLength { offset } => write!(
                f,
                "RecordIO: empty record length (a line feed with no digits) at offset {offset}"
            ),
            Self::LengthTooLong { offset } => write!(
                f,
                "RecordIO: record length longer than {MAX_LENGTH_DIGITS} digits at offset {offset}"
            ),
            Self::RecordTooLarge {
                length,
                max,
                offset,
            } => write!(
                f,
                "RecordIO: record of at least {length} bytes exceeds the maximum of {max} bytes (length at offset {offset})"
            ),
            Self::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "RecordIO: stream ended inside a record ({received} of {expected} bytes)"
            ),
            Self::Truncated {
                received,
                expected: None,
            } => write!(
                f,
                "RecordIO: stream ended inside a record length ({received} digits, no line feed)"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug)]
enum State {
    /// Reading the digits of a length.
    Length { value: u64, digits: usize },
    /// Reading `len` bytes of a record into `record`.
    Data { record: Vec<u8>, len: usize },
    /// A previous error; the stream is unusable.
    Failed(DecodeError),
}

/// An incremental RecordIO decoder: feed it the stream in chunks of any size, get back every
/// record completed by each chunk. It keeps at most one partial record, and never more bytes of
/// it than have arrived.
///
/// ```
/// use agora_mesos_proto::recordio::{encode, Decoder};
///
/// let mut stream = encode(br#"{"type":"HEARTBEAT"}"#);
/// stream.extend(encode(b"second"));
/// let mut decoder = Decoder::default();
/// let (a, b) = stream.split_at(5);
/// assert!(decoder.decode(a).unwrap().is_empty());
/// assert_eq!(decoder.decode(b).unwrap(), vec![br#"{"type":"HEARTBEAT"}"#.to_vec(), b"second".to_vec()]);
/// decoder.finish().unwrap();
/// ```
#[derive(Debug)]
pub struct Decoder {
    max_record_size: usize,
    state: State,
    /// Bytes of the stream consumed so far (for error offsets).
    offset: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD_SIZE)
    }
}

impl Decoder {
    /// A decoder refusing records longer than `max_record_size` bytes.
    pub fn new(max_record_size: usize) -> Self {
        Self {
            max_record_size,
            state: State::Length {
                value: 0,
                digits: 0,
            },
            offset: 0,
        }
    }

    /// The largest record this decoder accepts.
    pub fn max_record_size(&self) -> usize {
        self.max_record_size
    }

    /// Feeds the next chunk of the stream; returns the records it completed, in order.
    ///
    /// On error the records completed earlier in the same chunk are dropped; use
    /// [`Decoder::decode_into`] to keep them.
    pub fn decode(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut records = Vec::new();
        self.decode_into(chunk, &mut records)?;
        Ok(records)
    }

    /// Feeds the next chunk of the stream, appending the records it completes to `records`,
    /// including those completed before an error in the same chunk.
    pub fn decode_into(
        &mut self,
        mut chunk: &[u8],
        records: &mut Vec<Vec<u8>>,
    ) -> Result<(), DecodeError> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Failed(error) => return Err(error.clone()),
                State::Length { value, digits } => {
                    let byte = chunk[0];
                    let offset = self.offset;
                    chunk = &chunk[1..];
                    self.offset += 1;
                    match byte {
                        b'0'..=b'9' => {
                            *digits += 1;
                            if *digits > MAX_LENGTH_DIGITS {
                                return Err(self.fail(DecodeError::LengthTooLong { offset }));
                            }
                            match value
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                            {
                                Some(v) if v <= self.max_record_size as u64 => *value = v,
                                // Over the maximum, or past u64::MAX (reported as u64::MAX).
                                length => {
                                    return Err(self.fail(DecodeError::RecordTooLarge {
                                        length: length.unwrap_or(u64::MAX),
                                        max: self.max_record_size,
                                        offset,
                                    }));
                                }
                            }
                        }
                        b'\n' if *digits == 0 => {
                            return Err(self.fail(DecodeError::EmptyLength { offset }));
                        }
                        b'\n' => {
                            // Bounded by max_record_size, which is a usize.
                            let len = *value as usize;
                            if len == 0 {
                                records.push(Vec::new());
                                self.state = State::Length {
                                    value: 0,
                                    digits: 0,
                                };
                            } else {
                                self.state = State::Data {
                                    record: Vec::new(),
                                    len,
                                };
                            }
                        }
                        _ => return Err(self.fail(DecodeError::NonDigitLength { byte, offset })),
                    }
                }
                State::Data { record, len } => {
                    let missing = *len - record.len();
                    let take = missing.min(chunk.len());
                    if record.capacity() - record.len() < take {
                        // Grow geometrically, but never past the record's length: capacity
                        // stays within twice the bytes received.
                        let want = (record.len() + take).max(record.len() * 2).min(*len);
                        record.reserve_exact(want - record.len());
                    }
                    record.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    self.offset += take as u64;
                    if record.len() == *len {
                        records.push(std::mem::take(record));
                        self.state = State::Length {
                            value: 0,
                            digits: 0,
                        };
                    }
                }
            }
        }
        match &self.state {
            State::Failed(error) => Err(error.clone()),
            _ => Ok(()),
        }
    }

    /// Whether the stream may end here: no partial record or length is buffered, and no error
    /// occurred.
    pub fn is_at_boundary(&self) -> bool {
        matches!(self.state, State::Length { digits: 0, .. })
    }

    /// Checks that the stream ended cleanly: between records, with no earlier error.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.state {
            State::Length { digits: 0, .. } => Ok(()),
            State::Length { digits, .. } => Err(DecodeError::Truncated {
                received: *digits,
                expected: None,
            }),
            State::Data { record, len } => Err(DecodeError::Truncated {
                received: record.len(),
                expected: Some(*len),
            }),
            State::Failed(error) => Err(error.clone()),
        }
    }

    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.state = State::Failed(error.clone());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(decoder: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.decode_into(chunk, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn encodes_length_line_feed_bytes() {
        assert_eq!(encode(b"hello"), b"5\nhello");
        assert_eq!(encode(b""), b"0\n");
        let json = br#"{"type":"HEARTBEAT"}"#;
        assert_eq!(encode(json), [b"20\n".as_slice(), json].concat());
        let mut out = b"3\nabc".to_vec();
        encode_into(b"de", &mut out);
        assert_eq!(out, b"3\nabc2\nde");
    }

    #[test]
    fn one_chunk_holds_several_records() {
        let mut d = Decoder::default();
        let stream = [encode(b"one"), encode(b""), encode(b"three")].concat();
        assert_eq!(
            d.decode(&stream).unwrap(),
            vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]
        );
        assert!(d.is_at_boundary());
        d.finish().unwrap();
    }

    #[test]
    fn record_split_across_chunks() {
        let mut d = Decoder::default();
        assert!(d.decode(b"11\nhello").unwrap().is_empty());
        assert!(!d.is_at_boundary());
        assert!(d.decode(b" wo").unwrap().is_empty());
        assert_eq!(
            d.decode(b"rld4\nnext").unwrap(),
            vec![b"hello world".to_vec(), b"next".to_vec()]
        );
        d.finish().unwrap();
    }

    #[test]
    fn length_split_across_chunks() {
        let mut d = Decoder::default();
        let record = vec![b'x'; 1234];
        let stream = encode(&record);
        let out = decode_all(
            &mut d,
            &[&stream[..1], &stream[1..3], &stream[3..5], &stream[5..]],
        )
        .unwrap();
        assert_eq!(out, vec![record]);
    }

    #[test]
    fn byte_at_a_time() {
        let records: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![b'\n'; 12], b"0\n".to_vec()];
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        let mut d = Decoder::new(100);
        let mut out = Vec::new();
        for b in &stream {
            d.decode_into(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, records);
    }

    #[test]
    fn leading_zeros_are_digits() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(b"003\nabc").unwrap(), vec![b"abc".to_vec()]);
    }

    #[test]
    fn non_digit_length_is_an_error_and_sticks() {
        let mut d = Decoder::default();
        let err = d.decode(b"2\nok1x\n").unwrap_err();
        assert_eq!(
            err,
            DecodeError::NonDigitLength {
                byte: b'x',
                offset: 5
            }
        );
        assert!(err.to_string().contains("'x'"), "{err}");
        assert_eq!(d.decode(b"1\na").unwrap_err(), err);
        assert_eq!(d.finish().unwrap_err(), err);
        assert!(!d.is_at_boundary());
    }

    #[test]
    fn records_before_an_error_are_kept_by_decode_into() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let err = d.decode_into(b"2\nok\r\n", &mut out).unwrap_err();
        assert_eq!(out, vec![b"ok".to_vec()]);
        assert_eq!(
            err,
            DecodeError::NonDigitLength {
                byte: b'\r',
                offset: 4
            }
        );
    }

    #[test]
    fn sign_space_and_empty_length_are_errors() {
        for (input, offset) in [(&b"-1\n"[..], 0), (b" 1\n", 0), (b"1 \n", 1), (b"+1\n", 0)] {
            let err = Decoder::default().decode(input).unwrap_err();
            assert!(
                matches!(err, DecodeError::NonDigitLength { offset: o, .. } if o == offset),
                "{err:?}"
            );
        }
        assert_eq!(
            Decoder::default().decode(b"\n").unwrap_err(),
            DecodeError::EmptyLength { offset: 0 }
        );
    }

    #[test]
    fn over_long_length_prefix_is_an_error() {
        let mut d = Decoder::new(usize::MAX);
        let digits = vec![b'0'; MAX_LENGTH_DIGITS];
        assert!(d.decode(&digits).unwrap().is_empty());
        let err = d.decode(b"0").unwrap_err();
        assert_eq!(
            err,
            DecodeError::LengthTooLong {
                offset: MAX_LENGTH_DIGITS as u64
            }
        );
        assert!(err.to_string().contains("20 digits"), "{err}");
    }

    #[test]
    fn u64_overflow_is_too_large_not_a_wrap() {
        let mut d = Decoder::new(usize::MAX);
        // 20 digits, more than u64::MAX.
        let err = d.decode(b"99999999999999999999\n").unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::RecordTooLarge {
                    length: u64::MAX,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn record_over_the_maximum_is_refused_before_its_bytes() {
        let mut d = Decoder::new(10);
        assert_eq!(
            d.decode(b"10\n0123456789").unwrap(),
            vec![b"0123456789".to_vec()]
        );
        // Refused on the digit that crosses the limit, before any line feed or data.
        let err = d.decode(b"1").and_then(|_| d.decode(b"1")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::RecordTooLarge {
                length: 11,
                max: 10,
                offset: 14
            }
        );
        assert!(err.to_string().contains("maximum of 10 bytes"), "{err}");
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing_up_front() {
        let mut d = Decoder::new(1 << 40);
        assert!(d.decode(b"1099511627776\nab").unwrap().is_empty());
        match &d.state {
            State::Data { record, len } => {
                assert_eq!(*len, 1 << 40);
                assert!(record.capacity() <= 4, "capacity {}", record.capacity());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finish_reports_truncation() {
        let mut d = Decoder::default();
        d.decode(b"12").unwrap();
        assert_eq!(
            d.finish().unwrap_err(),
            DecodeError::Truncated {
                received: 2,
                expected: None
            }
        );
        d.decode(b"\nabc").unwrap();
        let err = d.finish().unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                received: 3,
                expected: Some(12)
            }
        );
        assert!(err.to_string().contains("3 of 12 bytes"), "{err}");
    }

    proptest! {
        /// Any records, encoded back to back and cut into chunks at arbitrary points, decode to
        /// the same records.
        #[test]
        fn rechunked_streams_decode_to_the_same_records(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..16),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut decoder = Decoder::new(200);
            let mut decoded = Vec::new();
            for pair in points.windows(2) {
                decoder.decode_into(&stream[pair[0]..pair[1]], &mut decoded).unwrap();
            }
            prop_assert_eq!(decoded, records);
            prop_assert!(decoder.is_at_boundary());
            prop_assert!(decoder.finish().is_ok());
        }

        /// Whatever bytes arrive, the decoder either errors or buffers at most one record of at
        /// most its maximum size.
        #[test]
        fn arbitrary_input_never_exceeds_the_bound(
            input in prop::collection::vec(any::<u8>(), 0..400),
            max in 0usize..64,
        ) {
            let mut decoder = Decoder::new(max);
            let mut out = Vec::new();
            let _ = decoder.decode_into(&input, &mut out);
            for record in &out {
                prop_assert!(record.len() <= max);
            }
            if let State::Data { record, len } = &decoder.state {
                prop_assert!(*len <= max);
                prop_assert!(record.capacity() <= max);
            }
        }
    }
}
