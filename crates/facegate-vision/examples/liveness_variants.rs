//! Research tool behind the liveness crop geometry (docs/models.md): runs
//! MiniFASNet V2 and V1SE on every frame of a labelled set under several
//! face-box conventions and border rules, and writes one CSV line per frame
//! with every variant's real-class probabilities, the quality measures and
//! the crop's clamping. Analysis happens on the CSV.
//!
//! `cargo run --release -p facegate-vision --example liveness_variants -- [--data DIR] [--models DIR] OUT.csv`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use facegate_vision::geometry::BoxF;
use facegate_vision::liveness::SpoofModel;
use facegate_vision::pipeline::{Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;
use facegate_vision::spoof::{self, BoxXYWH, CropRect};
use image::RgbImage;

#[path = "../tests/common/spoof_dev.rs"]
mod spoof_dev;

/// A face-box convention derived from YuNet's box.
fn boxes(b: &BoxF) -> Vec<(&'static str, BoxXYWH)> {
    let (cx, cy) = b.center();
    let (w, h) = (b.width(), b.height());
    let sq = |side: f32, dy: f32| BoxXYWH {
        x: cx - side / 2.0,
        y: cy + dy * h - side / 2.0,
        w: side,
        h: side,
    };
    vec![
        (
            "yunet",
            BoxXYWH {
                x: b.x0,
                y: b.y0,
                w,
                h,
            },
        ),
        ("sq_w", sq(w, 0.0)),
        ("sq_w_dlib", sq(w, 0.065)),
        ("sq_w106_dlib", sq(1.06 * w, 0.065)),
        ("sq_geo", sq((w * h).sqrt(), 0.0)),
        ("sq_h", sq(h, 0.0)),
    ]
}

/// Crop of `scale` × the box about its centre, out-of-image pixels replicated
/// from the border, resized to 80 × 80 as upstream; NCHW BGR.
fn padded_tensor(image: &RgbImage, f: BoxXYWH, scale: f32, aa: bool) -> Vec<f32> {
    let (cw, ch) = (
        (f.w * scale).round().max(1.0),
        (f.h * scale).round().max(1.0),
    );
    let (cx, cy) = (f.x + f.w / 2.0, f.y + f.h / 2.0);
    let (x0, y0) = (cx - cw / 2.0, cy - ch / 2.0);
    let (iw, ih) = image.dimensions();
    let crop = RgbImage::from_fn(cw as u32, ch as u32, |x, y| {
        let sx = (x0 + x as f32).round().clamp(0.0, iw as f32 - 1.0) as u32;
        let sy = (y0 + y as f32).round().clamp(0.0, ih as f32 - 1.0) as u32;
        *image.get_pixel(sx, sy)
    });
    let k = (crop.width().min(crop.height()) / 160).max(1);
    let crop = if aa && k >= 2 { shrink(&crop, k) } else { crop };
    let rect = CropRect {
        x1: 0,
        y1: 0,
        x2: crop.width() - 1,
        y2: crop.height() - 1,
    };
    let small = spoof::resize_linear(&crop, rect, 80, 80);
    let n = 6400;
    let mut t = vec![0.0; 3 * n];
    for (i, p) in small.pixels().enumerate() {
        for (c, &v) in p.0.iter().rev().enumerate() {
            t[c * n + i] = f32::from(v);
        }
    }
    t
}

/// Averages k × k blocks (anti-aliasing before the linear resize).
fn shrink(img: &RgbImage, k: u32) -> RgbImage {
    RgbImage::from_fn(img.width() / k, img.height() / k, |x, y| {
        let mut s = [0u32; 3];
        for yy in y * k..(y + 1) * k {
            for xx in x * k..(x + 1) * k {
                for (c, v) in img.get_pixel(xx, yy).0.iter().enumerate() {
                    s[c] += u32::from(*v);
                }
            }
        }
        image::Rgb(s.map(|v| ((v + k * k / 2) / (k * k)) as u8))
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = spoof_dev::default_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut models = std::env::var_os("FACEGATE_MODEL_DIR")
        .map_or_else(|| root.join("target/test-models"), PathBuf::from);
    let mut out_path = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = it.next().ok_or("--data DIR")?.into(),
            "--models" => models = it.next().ok_or("--models DIR")?.into(),
            _ => out_path = Some(PathBuf::from(a)),
        }
    }
    let out_path = out_path.ok_or("OUT.csv")?;
    let frames = spoof_dev::load_labels(&data)?;
    let engine = Engine::load(&EngineOptions::new(&models, RuntimeKind::OnnxRuntime))?;
    let mut out = String::from(
        "path,label,attack,source,img_w,img_h,faces,x0,y0,x1,y1,det,face_px,yaw,pitch,sharp,luma,clipped",
    );
    let names: Vec<&str> = boxes(&BoxF::default()).iter().map(|b| b.0).collect();
    for n in &names {
        for m in ["v2", "v1se"] {
            let _ = write!(out, ",{n}_{m}_clamp,{n}_{m}_pad,{n}_{m}_padaa,{n}_{m}_s");
        }
    }
    out.push('\n');
    for (k, f) in frames.iter().enumerate() {
        let bytes = std::fs::read(data.join(&f.path))?;
        let limits = facegate_image::Limits {
            max_bytes: 50_000_000,
            ..Default::default()
        };
        let image = facegate_image::decode(&bytes, &limits)?;
        let faces = engine.detect(&image)?;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{}",
            f.path,
            f.label,
            f.attack,
            f.source,
            image.width(),
            image.height(),
            faces.len()
        );
        let Some(d) = faces.first() else {
            out.push('\n');
            continue;
        };
        let q = engine.face_quality(&image, &d.bbox, &d.landmarks);
        let _ = write!(
            out,
            ",{:.1},{:.1},{:.1},{:.1},{:.3},{:.1},{:.1},{:.1},{:.4},{:.1},{:.3}",
            d.bbox.x0,
            d.bbox.y0,
            d.bbox.x1,
            d.bbox.y1,
            d.score,
            q.face_px,
            q.yaw.unwrap_or(f32::NAN),
            q.pitch.unwrap_or(f32::NAN),
            q.sharpness,
            q.luma,
            q.clipped
        );
        for (_, b) in boxes(&d.bbox) {
            for model in [SpoofModel::V2, SpoofModel::V1se] {
                let s = model.scale();
                let clamp = spoof::liveness_crop(&image, b, s, 80);
                let pad = padded_tensor(&image, b, s, false);
                let pad_aa = padded_tensor(&image, b, s, true);
                let pc = engine.spoof_softmax(model, &clamp)?[1];
                let pp = engine.spoof_softmax(model, &pad)?[1];
                let pa = engine.spoof_softmax(model, &pad_aa)?[1];
                // The scale upstream's rule actually used.
                let r = spoof::liveness_crop_rect(image.width(), image.height(), b, s);
                let used = (r.width() as f32 / b.w).min(r.height() as f32 / b.h);
                let _ = write!(out, ",{pc:.5},{pp:.5},{pa:.5},{used:.3}");
            }
        }
        out.push('\n');
        if k % 50 == 0 {
            eprintln!("{k}/{}", frames.len());
        }
    }
    std::fs::write(&out_path, out)?;
    Ok(())
}
