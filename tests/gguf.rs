//! The GGUF reader: the real file's layout, and every error kind on small hand-made files.

mod common;

use common::gguf_builder::{Builder, Meta};
use sinkscope::gguf::{GgmlType, Gguf, GgufError, Value};

fn base() -> Builder {
    Builder::new().meta("general.name", Meta::Str("t".into())).tensor_f32("a", &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.])
}

#[test]
fn real_model_layout() {
    let g = Gguf::parse(common::model_bytes()).expect("parses");
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    let count = |t: GgmlType| g.tensors.iter().filter(|x| x.ggml_type == t).count();
    assert_eq!((count(GgmlType::Q4_1), count(GgmlType::Q8_0), count(GgmlType::F32)), (210, 1, 61));
    assert!(g.tensor("output.weight").is_err(), "SmolLM2 ties its output to the embedding");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.get_str_array("tokenizer.ggml.merges").unwrap().len(), 48900);
    let (emb, shape) = g.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, vec![49152, 576]);
    assert_eq!(emb.len(), 49152 * 576);
    assert!(emb.iter().all(|x| x.is_finite()));
    let (q, shape) = g.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(shape, vec![576, 576]);
    assert!(q.iter().all(|x| x.is_finite()));
}

/// Gemma 3's file: its block types, and each type's expansion bit for bit against the reference's
/// fixtures (`gguf.quants.dequantize` on rows 0–1 of one tensor per type), read from the real file
/// at the offset the fixture names.
#[test]
fn gemma_block_types_dequantize_exactly() {
    let g = Gguf::parse(common::gemma_bytes()).expect("parses");
    let count = |t: GgmlType| g.tensors.iter().filter(|x| x.ggml_type == t).count();
    assert_eq!(
        [count(GgmlType::F32), count(GgmlType::Q8_0), count(GgmlType::Q5_0), count(GgmlType::Q4K), count(GgmlType::Q6K)],
        [109, 10, 81, 27, 9]
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::fixture("gemma3/dequant_fixtures.json")).unwrap()).unwrap();
    for (name, ty) in [("Q4_K", GgmlType::Q4K), ("Q6_K", GgmlType::Q6K), ("Q5_0", GgmlType::Q5_0), ("Q8_0", GgmlType::Q8_0)] {
        let m = &meta["types"][name];
        let (rs, raw) = common::safetensor_bytes("gemma3/dequant_fixtures.safetensors", &format!("{name}.raw"));
        let (es, expected) = common::safetensor("gemma3/dequant_fixtures.safetensors", &format!("{name}.expected"));
        let (row_bytes, ne0) = (rs[1], es[1]);
        // the fixture's bytes are the file's bytes
        let info = g.tensor(m["tensor"].as_str().unwrap()).unwrap();
        assert_eq!(info.ggml_type, ty);
        let file = g.tensor_bytes(info).unwrap();
        assert_eq!(&file[..2 * row_bytes], &raw[..], "{name}: bytes of rows 0-1");
        let got = sinkscope::gguf::dequantize(ty, &raw, 2 * ne0);
        assert_eq!(got.len(), expected.len());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&expected), "{name}: expansion differs from gguf's");
    }
    // every tensor of the file expands to finite values
    for t in &g.tensors {
        let (v, _) = g.tensor_f32(&t.name).unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{}", t.name);
    }
}

#[test]
fn roundtrip_all_value_types_and_data() {
    let bytes = base()
        .meta("u32", Meta::U32(7))
        .meta("i32", Meta::I32(-7))
        .meta("f32", Meta::F32(0.5))
        .meta("u64", Meta::U64(1 << 40))
        .meta("bool", Meta::Bool(true))
        .meta("arr", Meta::StrArray(vec!["x".into(), "y".into()]))
        .meta("u8", Meta::Raw(0, vec![200]))
        .meta("i8", Meta::Raw(1, vec![0xFF]))
        .meta("u16", Meta::Raw(2, 65535u16.to_le_bytes().to_vec()))
        .meta("i16", Meta::Raw(3, (-2i16).to_le_bytes().to_vec()))
        .meta("i64", Meta::Raw(11, (-3i64).to_le_bytes().to_vec()))
        .meta("f64", Meta::Raw(12, 2.5f64.to_le_bytes().to_vec()))
        .meta("nested", Meta::Raw(9, [9u32.to_le_bytes().as_slice(), &1u64.to_le_bytes(), &4u32.to_le_bytes(), &1u64.to_le_bytes(), &5u32.to_le_bytes()].concat()))
        .build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get("u8"), Some(&Value::U8(200)));
    assert_eq!(g.get("i8"), Some(&Value::I8(-1)));
    assert_eq!(g.get("u16"), Some(&Value::U16(65535)));
    assert_eq!(g.get("i16"), Some(&Value::I16(-2)));
    assert_eq!(g.get("i32"), Some(&Value::I32(-7)));
    assert_eq!(g.get("i64"), Some(&Value::I64(-3)));
    assert_eq!(g.get("f64"), Some(&Value::F64(2.5)));
    assert_eq!(g.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(g.get_u64("u64").unwrap(), 1 << 40);
    assert_eq!(g.get_f64("f32").unwrap(), 0.5);
    assert_eq!(g.get("nested"), Some(&Value::Array(vec![Value::Array(vec![Value::U32(5)])])));
    assert_eq!(g.get_str_array("arr").unwrap(), vec!["x", "y"]);
    let (data, shape) = g.tensor_f32("a").unwrap();
    assert_eq!(shape, vec![2, 4]);
    assert_eq!(data, vec![1., 2., 3., 4., 5., 6., 7., 8.]);
    // version 2 reads the same
    let mut b = base();
    b.version = 2;
    assert!(Gguf::parse(&b.build()).is_ok());
}

#[test]
fn f16_bf16_dequantize() {
    let vals = [1.5f32, -2.0, 0.0, 65504.0];
    let f16: Vec<u8> = vals.iter().flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes()).collect();
    let bf16: Vec<u8> = vals.iter().flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes()).collect();
    let bytes = Builder::new().tensor_raw("h", &[4], 1, f16).tensor_raw("b", &[4], 30, bf16).build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.tensor_f32("h").unwrap().0, vals.to_vec());
    assert_eq!(g.tensor_f32("b").unwrap().0, vec![1.5, -2.0, 0.0, 65536.0]);
}

fn err(bytes: &[u8]) -> GgufError {
    Gguf::parse(bytes).expect_err("must fail")
}

#[test]
fn bad_magic_and_version() {
    let mut b = base().build();
    b[0] = b'X';
    assert!(matches!(err(&b), GgufError::BadMagic(_)));
    let mut b = base();
    b.version = 1;
    assert_eq!(err(&b.build()), GgufError::UnsupportedVersion(1));
    b.version = 4;
    assert_eq!(err(&b.build()), GgufError::UnsupportedVersion(4));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let full = base().meta("arr", Meta::StrArray(vec!["abc".into(); 3])).build();
    // header + metadata + tensor infos end before the data; any cut must be reported
    for cut in 0..full.len() {
        let r = Gguf::parse(&full[..cut]);
        assert!(r.is_err(), "prefix of {cut} bytes parsed");
    }
    assert!(matches!(err(&full[..10]), GgufError::Truncated { .. }));
    let msg = err(&full[..30]).to_string();
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    // metadata count of 2^60
    let mut b = base().build();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(err(&b), GgufError::ImpossibleCount { .. }));
    // tensor count of 2^60
    let mut b = base().build();
    b[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(err(&b), GgufError::ImpossibleCount { .. }));
    // array of 2^62 u32
    let payload = [4u32.to_le_bytes().as_slice(), &(1u64 << 62).to_le_bytes()].concat();
    assert!(matches!(err(&base().meta("big", Meta::Raw(9, payload)).build()), GgufError::ImpossibleCount { .. }));
    // string length of 2^63
    let payload = (1u64 << 63).to_le_bytes().to_vec();
    assert!(matches!(err(&base().meta("s", Meta::Raw(8, payload)).build()), GgufError::Truncated { .. }));
}

#[test]
fn bad_values() {
    assert!(matches!(err(&base().meta("x", Meta::Raw(99, vec![0; 8])).build()), GgufError::UnknownValueType { value_type: 99, .. }));
    let bad_utf8 = [3u64.to_le_bytes().as_slice(), &[0xff, 0xfe, 0xfd]].concat();
    assert!(matches!(err(&base().meta("x", Meta::Raw(8, bad_utf8)).build()), GgufError::InvalidUtf8 { .. }));
    // arrays nested five deep
    let mut deep = Vec::new();
    for _ in 0..5 {
        deep.extend(9u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend(4u32.to_le_bytes());
    deep.extend(0u64.to_le_bytes());
    assert!(matches!(err(&base().meta("x", Meta::Raw(9, deep)).build()), GgufError::ArrayTooDeep { .. }));
    assert!(matches!(err(&base().meta("general.name", Meta::Str("again".into())).build()), GgufError::DuplicateKey(_)));
    assert_eq!(err(&base().meta("general.alignment", Meta::U32(24)).build()), GgufError::BadAlignment(24));
    assert_eq!(err(&base().meta("general.alignment", Meta::U32(0)).build()), GgufError::BadAlignment(0));
    assert!(matches!(err(&base().meta("general.alignment", Meta::Str("32".into())).build()), GgufError::WrongType { .. }));
}

#[test]
fn custom_alignment_is_honoured() {
    let mut b = base().meta("general.alignment", Meta::U32(64)).tensor_f32("b", &[3], &[9., 8., 7.]);
    b.alignment = 64;
    let bytes = b.build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_start % 64, 0);
    assert_eq!(g.tensor_f32("b").unwrap().0, vec![9., 8., 7.]);
}

#[test]
fn bad_tensor_infos() {
    assert!(matches!(err(&base().tensor_f32("a", &[1], &[0.]).build()), GgufError::DuplicateTensor(_)));
    assert!(matches!(err(&base().tensor_f32("b", &[1, 1, 1, 1, 1], &[0.]).build()), GgufError::TooManyDims { n_dims: 5, .. }));
    assert!(matches!(err(&base().tensor_f32("b", &[0, 3], &[]).build()), GgufError::BadShape { .. }));
    assert!(matches!(err(&base().tensor_f32("b", &[1 << 40, 1 << 40], &[]).build()), GgufError::BadShape { .. } | GgufError::TensorOutOfBounds { .. }));
    assert!(matches!(err(&base().tensor_raw("b", &[32], 77, vec![0; 32]).build()), GgufError::UnknownTensorType { ggml_type: 77, .. }));
    // a Q4_1 row of 20 values is not a whole block
    assert!(matches!(err(&base().tensor_raw("b", &[20], 3, vec![0; 20]).build()), GgufError::RowNotBlockAligned { .. }));
    // data that runs past the end of the file
    let mut bytes = base().tensor_f32("b", &[64], &[1.0; 64]).build();
    bytes.truncate(bytes.len() - 4);
    assert!(matches!(err(&bytes), GgufError::TensorOutOfBounds { .. }));
    let msg = err(&bytes).to_string();
    assert!(msg.contains("\"b\"") && msg.contains("outside the file"), "{msg}");
}

#[test]
fn misaligned_offset() {
    let mut bytes = base().build();
    // the tensor offset is the last 8 bytes of the single tensor info, just before the padding
    let g = Gguf::parse(&bytes).unwrap();
    let info_end = {
        // name "a": 8 + 1, n_dims 4, dims 16, type 4, offset 8
        let mut pos = 24usize;
        pos += 8 + "general.name".len() + 4 + 8 + 1;
        pos + 8 + 1 + 4 + 16 + 4
    };
    assert_eq!(g.tensors.len(), 1);
    bytes[info_end..info_end + 8].copy_from_slice(&4u64.to_le_bytes());
    assert!(matches!(err(&bytes), GgufError::MisalignedTensor { offset: 4, .. }));
}

#[test]
fn unsupported_type_and_missing_names() {
    // Q5_K has a known layout (so the file parses) but is not dequantized
    let bytes = base().tensor_raw("k", &[256], 13, vec![0; 176]).build();
    let g = Gguf::parse(&bytes).unwrap();
    let e = g.tensor_f32("k").unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedTensorType { .. }));
    assert!(e.to_string().contains("Q5_K"), "{e}");
    assert!(matches!(g.tensor_f32("nope"), Err(GgufError::MissingTensor(_))));
    assert!(matches!(g.get_u64("nope"), Err(GgufError::MissingKey(_))));
    assert!(matches!(g.get_u64("general.name"), Err(GgufError::WrongType { .. })));
}

#[test]
fn random_corruption_never_panics() {
    let good = common::gguf_builder::tiny_llama(1);
    let mut state = 12345u64;
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % b.len() as u64) as usize;
            b[i] = (state >> 32) as u8;
        }
        if let Ok(g) = Gguf::parse(&b) {
            for t in g.tensors.clone() {
                let _ = g.tensor_f32(&t.name);
            }
        }
    }
}
