//! Safetensors checkpoints ↔ [`Decoder`]: `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, F32/BF16/F16 on disk, f32 in memory. Keys and layouts are
//! transformers' (`model.layers.0.self_attn.q_proj.weight`, linear weights `[out, in]`), so a
//! saved folder loads with `AutoModelForCausalLM.from_pretrained`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::DecoderConfig;
use crate::decoder::{Attention, Decoder, DecoderLayer, Mlp, RmsNorm};
use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::rope::Rope;

/// Element type of a checkpoint on disk; saving writes the type the model was loaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    BF16,
    F16,
}

impl StorageDtype {
    fn of(dtype: Dtype) -> Option<Self> {
        match dtype {
            Dtype::F32 => Some(StorageDtype::F32),
            Dtype::BF16 => Some(StorageDtype::BF16),
            Dtype::F16 => Some(StorageDtype::F16),
            _ => None,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::BF16 => Dtype::BF16,
            StorageDtype::F16 => Dtype::F16,
        }
    }

    /// Little-endian bytes of `values` in this type (round-to-nearest-even for halves).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            StorageDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StorageDtype::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            StorageDtype::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }
}

/// A host-side tensor read from a checkpoint, always f32.
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub dtype: StorageDtype,
}

/// All tensors of one or more safetensors files, read into memory, addressed by key.
pub struct TensorFile {
    files: Vec<(PathBuf, Vec<u8>)>,
    index: HashMap<String, usize>,
}

impl TensorFile {
    /// Opens one safetensors file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_many(vec![path.to_path_buf()])
    }

    /// Opens a model folder's weights: `model.safetensors`, or the shards its index names.
    pub fn open_model_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if single.exists() {
            return Self::open(&single);
        }
        if !index_path.exists() {
            return Err(ModelError::MissingFile { path: single });
        }
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let index: Index = crate::error::read_json(&index_path)?;
        let mut shards: Vec<String> = index.weight_map.values().cloned().collect();
        shards.sort();
        shards.dedup();
        for shard in &shards {
            let path = dir.join(shard);
            if !path.exists() {
                return Err(ModelError::Safetensors {
                    path: index_path.clone(),
                    message: format!("shard {shard} listed in the index is missing"),
                });
            }
        }
        Self::open_many(shards.iter().map(|s| dir.join(s)).collect())
    }

    fn open_many(paths: Vec<PathBuf>) -> Result<Self> {
        let mut out = TensorFile { files: Vec::new(), index: HashMap::new() };
        for path in paths {
            let bytes = crate::error::read(&path)?;
            out.add(path, bytes)?;
        }
        Ok(out)
    }

    /// Parses a safetensors file already in memory; `path` only names it in errors. Any bytes
    /// give a value or an error, never a panic (the fuzz target `safetensors_header` checks).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mut out = TensorFile { files: Vec::new(), index: HashMap::new() };
        out.add(path.to_path_buf(), bytes)?;
        Ok(out)
    }

    fn add(&mut self, path: PathBuf, bytes: Vec<u8>) -> Result<()> {
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for name in st.names() {
            self.index.insert(name.to_string(), self.files.len());
        }
        self.files.push((path, bytes));
        Ok(())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The path of the (first) file, for error messages.
    pub fn path(&self) -> &Path {
        &self.files[0].0
    }

    /// The file holding `key`, and the tensor's view in it.
    fn view(&self, key: &str) -> Result<(&PathBuf, safetensors::tensor::TensorView<'_>)> {
        let Some(&file) = self.index.get(key) else {
            return Err(ModelError::MissingTensor {
                path: self.path().to_path_buf(),
                key: key.to_string(),
            });
        };
        let (path, bytes) = &self.files[file];
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let view = st.tensor(key).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok((path, view))
    }

    /// Reads `key` as bytes when it is stored as U8 (codes, written by
    /// [`write_safetensors_with_codes`]); `None` for any other type.
    pub fn codes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (_, view) = self.view(key)?;
        Ok((view.dtype() == Dtype::U8).then(|| view.data().to_vec()))
    }

    /// Reads `key` as f32, checking its shape when `expected` is given.
    pub fn get(&self, key: &str, expected: Option<&[usize]>) -> Result<HostTensor> {
        let (path, view) = self.view(key)?;
        let shape = view.shape().to_vec();
        if let Some(expected) = expected {
            if shape != expected {
                return Err(ModelError::ShapeMismatch {
                    path: path.clone(),
                    key: key.to_string(),
                    found: shape,
                    expected: expected.to_vec(),
                });
            }
        }
        let dtype = StorageDtype::of(view.dtype()).ok_or_else(|| ModelError::UnsupportedDtype {
            path: path.clone(),
            key: key.to_string(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let raw = view.data();
        let data: Vec<f32> = match dtype {
            StorageDtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StorageDtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StorageDtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        let count = non_finite(&data);
        if count > 0 {
            return Err(ModelError::NonFiniteTensor { path: path.clone(), key: key.to_string(), count });
        }
        Ok(HostTensor { shape, data, dtype })
    }

    /// Reads an HF linear weight `[out, in]` as a Burn `[in, out]` tensor.
    pub fn linear_weight(
        &self,
        key: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let t = self.get(key, Some(&[d_out, d_in]))?;
        Ok(Tensor::from_data(TensorData::new(transpose(&t.data, d_out, d_in), [d_in, d_out]), device))
    }

    /// Reads a tensor of any rank with the exact expected shape.
    pub fn tensor<const D: usize>(&self, key: &str, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        let t = self.get(key, Some(&shape))?;
        Ok(Tensor::from_data(TensorData::new(t.data, shape), device))
    }
}

/// How many of `data` are NaN or infinite.
pub fn non_finite(data: &[f32]) -> usize {
    data.iter().filter(|x| !x.is_finite()).count()
}

/// Reads a tensor back to the host as f32, whatever its device and dtype.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("tensor readback")
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The storage type of a model folder's weights (that of `model.embed_tokens.weight`), read
/// from the safetensors header alone, without loading any tensor.
pub fn storage_dtype(dir: &Path) -> Result<StorageDtype> {
    const KEY: &str = "model.embed_tokens.weight";
    let mut path = dir.join("model.safetensors");
    if !path.exists() {
        let index: serde_json::Value = crate::error::read_json(&dir.join("model.safetensors.index.json"))?;
        let shard = index["weight_map"][KEY].as_str().ok_or_else(|| ModelError::MissingTensor {
            path: dir.join("model.safetensors.index.json"),
            key: KEY.into(),
        })?;
        path = dir.join(shard);
    }
    let bad = |message: String| ModelError::Safetensors { path: path.clone(), message };
    let io = |source| ModelError::Io { path: path.clone(), source };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(format!("header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    std::io::Read::read_exact(&mut f, &mut header).map_err(io)?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    match header[KEY]["dtype"].as_str() {
        Some("F32") => Ok(StorageDtype::F32),
        Some("BF16") => Ok(StorageDtype::BF16),
        Some("F16") => Ok(StorageDtype::F16),
        other => Err(ModelError::UnsupportedDtype { path: path.clone(), key: KEY.into(), dtype: format!("{other:?}") }),
    }
}

/// A model folder's decoder, loaded.
pub struct Loaded {
    pub model: Decoder,
    pub dtype: StorageDtype,
}

/// Builds a [`Decoder`] from a model folder (`config.json` + safetensors).
pub fn load_decoder(dir: &Path, device: &Device) -> Result<Loaded> {
    if dir.is_file() {
        return Err(ModelError::NotAFolder { path: dir.to_path_buf() });
    }
    if !dir.is_dir() {
        return Err(ModelError::MissingFolder {
            path: dir.to_path_buf(),
        });
    }
    let config = DecoderConfig::from_file(&dir.join("config.json"))?;
    let file = TensorFile::open_model_dir(dir)?;
    let dtype = file.get("model.embed_tokens.weight", None)?.dtype;
    let model = build(&config, device, &mut |key, shape| Ok(file.get(key, Some(shape))?.data))?;
    let layer = |k: &str| k.strip_prefix("model.layers.")?.split('.').next()?.parse::<usize>().ok();
    if let Some(deepest) = file.keys().filter_map(layer).max().filter(|&d| d >= config.num_layers) {
        tracing::warn!(
            "{}: num_hidden_layers is {}, but the checkpoint holds {} layers: the tensors of layers {}..{} are not used",
            dir.join("config.json").display(),
            config.num_layers,
            deepest + 1,
            config.num_layers,
            deepest
        );
    }
    Ok(Loaded { model, dtype })
}

/// A randomly initialised decoder, as transformers' `_init_weights` does it: linear and
/// embedding weights N(0, `std`), biases 0, norm weights 1. Seeded and deterministic.
pub fn random_decoder(config: &DecoderConfig, std: f64, seed: u64, device: &Device) -> Decoder {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, std as f32).expect("finite std");
    build(config, device, &mut |key, shape| {
        let n = shape.iter().product();
        Ok(if key.ends_with("norm.weight") {
            vec![1.0; n]
        } else if key.ends_with(".bias") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        })
    })
    .expect("random weights always have the right shapes")
}

/// Reads tensor `key` with HF shape `shape` (f32, row-major).
pub(crate) type Fetch<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

pub(crate) fn linear(fetch: &mut Fetch, prefix: &str, d_in: usize, d_out: usize, bias: bool, device: &Device) -> Result<Linear> {
    let w = fetch(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let weight = Tensor::from_data(TensorData::new(transpose(&w, d_out, d_in), [d_in, d_out]), device);
    let bias = if bias {
        let b = fetch(&format!("{prefix}.bias"), &[d_out])?;
        Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [d_out]), device)))
    } else {
        None
    };
    Ok(Linear { weight: Param::from_tensor(weight), bias, lora: None })
}

fn rms_norm(fetch: &mut Fetch, key: &str, c: &DecoderConfig, device: &Device) -> Result<RmsNorm> {
    norm(fetch, key, c.hidden_size, c.rms_norm_eps, device)
}

pub(crate) fn norm(fetch: &mut Fetch, key: &str, size: usize, eps: f64, device: &Device) -> Result<RmsNorm> {
    let w = fetch(key, &[size])?;
    Ok(RmsNorm {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [size]), device)),
        eps,
    })
}

pub(crate) fn build(c: &DecoderConfig, device: &Device, f: &mut Fetch) -> Result<Decoder> {
    let (h, q_dim, kv_dim, ff) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
    );
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        layers.push(DecoderLayer {
            self_attn: Attention {
                q_proj: linear(f, &format!("{p}.self_attn.q_proj"), h, q_dim, c.qkv_bias, device)?,
                k_proj: linear(f, &format!("{p}.self_attn.k_proj"), h, kv_dim, c.qkv_bias, device)?,
                v_proj: linear(f, &format!("{p}.self_attn.v_proj"), h, kv_dim, c.qkv_bias, device)?,
                o_proj: linear(f, &format!("{p}.self_attn.o_proj"), q_dim, h, c.o_bias, device)?,
                num_heads: c.num_heads,
                num_kv_heads: c.num_kv_heads,
                head_dim: c.head_dim,
            },
            mlp: Mlp {
                gate_proj: linear(f, &format!("{p}.mlp.gate_proj"), h, ff, c.mlp_bias, device)?,
                up_proj: linear(f, &format!("{p}.mlp.up_proj"), h, ff, c.mlp_bias, device)?,
                down_proj: linear(f, &format!("{p}.mlp.down_proj"), ff, h, c.mlp_bias, device)?,
            },
            input_layernorm: rms_norm(f, &format!("{p}.input_layernorm.weight"), c, device)?,
            post_attention_layernorm: rms_norm(f, &format!("{p}.post_attention_layernorm.weight"), c, device)?,
        });
    }
    // Some tied checkpoints still carry a copy of `lm_head.weight`; the tie wins, as in
    // transformers.
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(linear(f, "lm_head", h, c.vocab_size, false, device)?)
    };
    let embed = f("model.embed_tokens.weight", &[c.vocab_size, h])?;
    Ok(Decoder {
        embed_tokens: Param::from_tensor(Tensor::from_data(TensorData::new(embed, [c.vocab_size, h]), device)),
        layers,
        norm: rms_norm(f, "model.norm.weight", c, device)?,
        lm_head,
        config: c.clone(),
        rope: Rope::new(c),
        compute: burn::tensor::DType::F32,
    })
}

/// Every base tensor of `model` under its HF key, in HF layout (`[out, in]` linears), host-side.
pub fn hf_tensors(model: &Decoder) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let vec1 = |p: &Param<Tensor<1>>| -> Vec<f32> { host(p.val()) };
    let c = &model.config;
    out.push((
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, c.hidden_size],
        host(model.embed_tokens.val()),
    ));
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let a = &layer.self_attn;
        for (name, l) in [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)] {
            push_linear(&mut out, format!("{p}.self_attn.{name}"), l);
        }
        let m = &layer.mlp;
        for (name, l) in [("gate_proj", &m.gate_proj), ("up_proj", &m.up_proj), ("down_proj", &m.down_proj)] {
            push_linear(&mut out, format!("{p}.mlp.{name}"), l);
        }
        out.push((format!("{p}.input_layernorm.weight"), vec![c.hidden_size], vec1(&layer.input_layernorm.weight)));
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![c.hidden_size],
            vec1(&layer.post_attention_layernorm.weight),
        ));
    }
    out.push(("model.norm.weight".into(), vec![c.hidden_size], vec1(&model.norm.weight)));
    if let Some(head) = &model.lm_head {
        push_linear(&mut out, "lm_head".into(), head);
    }
    out
}

/// Appends a linear layer's `{prefix}.weight` (HF's `[out, in]`) and bias, if any.
pub(crate) fn push_linear(out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, prefix: String, l: &Linear) {
    let (d_in, d_out) = (l.d_in(), l.d_out());
    let w: Vec<f32> = host(l.weight.val());
    out.push((format!("{prefix}.weight"), vec![d_out, d_in], transpose(&w, d_in, d_out)));
    if let Some(b) = &l.bias {
        out.push((format!("{prefix}.bias"), vec![d_out], host(b.val())));
    }
}

/// Writes tensors to one safetensors file with `{"format": "pt"}` metadata (transformers
/// expects it). Writes to a temporary name and renames, so a failure leaves no partial file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: StorageDtype,
) -> Result<()> {
    write_safetensors_with_codes(path, tensors, dtype, &[])
}

/// [`write_safetensors`], plus `codes` stored as U8, one byte each: 8-bit optimizer moments,
/// which as f32 values would take four times the disk (read back by [`TensorFile::codes`]).
pub fn write_safetensors_with_codes(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: StorageDtype,
    codes: &[(String, Vec<usize>, Vec<u8>)],
) -> Result<()> {
    // Checked before anything is written: a NaN model never lands on disk as a success.
    for (key, _, data) in tensors {
        let count = non_finite(data);
        if count > 0 {
            return Err(ModelError::NonFiniteSave { path: path.to_path_buf(), key: key.clone(), count });
        }
    }
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, s, d)| (k.clone(), s.clone(), dtype.encode(d)))
        .collect();
    let typed = encoded.iter().map(|t| (dtype.safetensors(), t)).chain(codes.iter().map(|t| (Dtype::U8, t)));
    let views = typed
        .map(|(dtype, (k, s, bytes))| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), bytes)
                .map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| {
        ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    crate::io::write_atomic(path, &bytes)
}
