//! The image pipeline itself: decode (or synthesise), resize, encode.
//!
//! Pure CPU work on byte slices; the handler runs it off the async reactor.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, RgbImage};
use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Deserialize;

/// Largest side of a synthetic image (keeps one request's memory bounded:
/// 8192² RGB is 192 MiB).
pub const MAX_SIDE: u32 = 8192;
/// Default longest side of the thumbnail.
pub const DEFAULT_THUMB: u32 = 128;
/// Largest accepted thumbnail side.
pub const MAX_THUMB: u32 = 2048;

/// Why a payload could not be turned into a thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// The payload is neither a PNG/JPEG image nor a valid JSON request.
    #[error(
        "payload is neither a PNG/JPEG image nor a JSON request {{\"side\": N, \"seed\": S}}: {0}"
    )]
    BadRequest(String),
    /// A size in the request is out of range.
    #[error("{field} = {value} is out of range; expected 1..={max}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Largest accepted value.
        max: u32,
    },
    /// The image bytes could not be decoded.
    #[error("cannot decode image: {0}")]
    Decode(#[source] image::ImageError),
    /// The thumbnail could not be encoded.
    #[error("cannot encode thumbnail: {0}")]
    Encode(#[source] image::ImageError),
}

/// Output encoding of the thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PNG (lossless), the default.
    #[default]
    Png,
    /// JPEG, quality 85.
    Jpeg,
}

impl Format {
    /// MIME type of the encoded thumbnail.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
        }
    }
}

/// A JSON request for a synthetic source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticRequest {
    /// Side of the square source image, pixels.
    pub side: u64,
    /// Seed of the generated picture (same seed, same picture).
    #[serde(default)]
    pub seed: u64,
    /// Longest side of the thumbnail (default [`DEFAULT_THUMB`]).
    #[serde(default)]
    pub thumb: Option<u64>,
    /// Output encoding (default PNG).
    #[serde(default)]
    pub format: Format,
}

/// The thumbnail and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Encoded image bytes.
    pub bytes: Vec<u8>,
    /// Their encoding.
    pub format: Format,
    /// Source width and height.
    pub source: (u32, u32),
    /// Thumbnail width and height.
    pub size: (u32, u32),
}

fn in_range(field: &'static str, value: u64, max: u32) -> Result<u32, ThumbError> {
    match u32::try_from(value) {
        Ok(v) if v >= 1 && v <= max => Ok(v),
        _ => Err(ThumbError::OutOfRange { field, value, max }),
    }
}

/// Deterministic test picture: smooth colour gradients plus seeded noise, so
/// the resize and the encoder both have real work to do.
pub fn synthesize(side: u32, seed: u64) -> RgbImage {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let phase = (rng.next_u32() % 256) as u8;
    let mut img = RgbImage::new(side, side);
    let scale = 255.0 / f64::from(side.max(1));
    for (x, y, px) in img.enumerate_pixels_mut() {
        let noise = rng.next_u32();
        // Truncating casts are intended: values are already within 0..=255.
        let r = (f64::from(x) * scale) as u8;
        let g = (f64::from(y) * scale) as u8;
        let b = phase.wrapping_add(((x ^ y) & 0xff) as u8);
        px.0 = [
            r.wrapping_add((noise & 0x1f) as u8),
            g.wrapping_add(((noise >> 8) & 0x1f) as u8),
            b.wrapping_add(((noise >> 16) & 0x1f) as u8),
        ];
    }
    img
}

fn looks_like_image(payload: &[u8]) -> bool {
    payload.starts_with(b"\x89PNG\r\n\x1a\n") || payload.starts_with(&[0xff, 0xd8, 0xff])
}

/// Makes a thumbnail whose longest side is `thumb` (aspect ratio kept).
pub fn thumbnail_of(
    img: &DynamicImage,
    thumb: u32,
    format: Format,
) -> Result<Thumbnail, ThumbError> {
    let small = img.resize(thumb, thumb, FilterType::Lanczos3);
    let mut out = Cursor::new(Vec::new());
    let fmt = match format {
        Format::Png => ImageFormat::Png,
        Format::Jpeg => ImageFormat::Jpeg,
    };
    // JPEG has no alpha channel: encode RGB8 for it.
    let encoded = match format {
        Format::Png => small.write_to(&mut out, fmt),
        Format::Jpeg => DynamicImage::ImageRgb8(small.to_rgb8()).write_to(&mut out, fmt),
    };
    encoded.map_err(ThumbError::Encode)?;
    Ok(Thumbnail {
        bytes: out.into_inner(),
        format,
        source: (img.width(), img.height()),
        size: (small.width(), small.height()),
    })
}

/// Runs the pipeline on a task payload: a PNG/JPEG image (thumbnail side
/// `default_thumb`, PNG out) or a JSON [`SyntheticRequest`].
pub fn process(payload: &[u8], default_thumb: u32) -> Result<Thumbnail, ThumbError> {
    if looks_like_image(payload) {
        let img = image::load_from_memory(payload).map_err(ThumbError::Decode)?;
        return thumbnail_of(&img, default_thumb, Format::Png);
    }
    let req: SyntheticRequest =
        serde_json::from_slice(payload).map_err(|e| ThumbError::BadRequest(e.to_string()))?;
    let side = in_range("side", req.side, MAX_SIDE)?;
    let thumb = match req.thumb {
        Some(t) => in_range("thumb", t, MAX_THUMB)?,
        None => default_thumb,
    };
    let img = DynamicImage::ImageRgb8(synthesize(side, req.seed));
    thumbnail_of(&img, thumb, req.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_request_gives_a_decodable_png_thumbnail() {
        let t = process(br#"{"side": 300, "seed": 7}"#, 64).expect("thumbnail");
        assert_eq!(t.source, (300, 300));
        assert_eq!(t.size, (64, 64));
        assert_eq!(t.format, Format::Png);
        let back = image::load_from_memory(&t.bytes).expect("decodes");
        assert_eq!((back.width(), back.height()), (64, 64));
    }

    #[test]
    fn same_seed_same_picture() {
        assert_eq!(synthesize(32, 1), synthesize(32, 1));
        assert_ne!(synthesize(32, 1), synthesize(32, 2));
    }

    #[test]
    fn image_payload_keeps_aspect_ratio_and_jpeg_works() {
        let t = process(
            br#"{"side": 200, "seed": 1, "thumb": 100, "format": "jpeg"}"#,
            64,
        )
        .expect("jpeg thumbnail");
        assert_eq!(t.format, Format::Jpeg);
        assert!(t.bytes.starts_with(&[0xff, 0xd8, 0xff]));

        // A non-square PNG in, thumbnail keeps 2:1.
        let wide = DynamicImage::ImageRgb8(RgbImage::new(400, 200));
        let mut png = Cursor::new(Vec::new());
        wide.write_to(&mut png, ImageFormat::Png).expect("encode");
        let t = process(&png.into_inner(), 100).expect("thumbnail");
        assert_eq!(t.source, (400, 200));
        assert_eq!(t.size, (100, 50));

        // The JPEG thumbnail decodes as an image input too.
        let again = process(&t.bytes, 10).expect("png in");
        assert_eq!(again.size, (10, 5));
    }

    #[test]
    fn bad_inputs_are_typed() {
        assert!(matches!(
            process(b"hello", 64),
            Err(ThumbError::BadRequest(_))
        ));
        assert!(matches!(
            process(br#"{"side": 0}"#, 64),
            Err(ThumbError::OutOfRange { field: "side", .. })
        ));
        assert!(matches!(
            process(br#"{"side": 99999}"#, 64),
            Err(ThumbError::OutOfRange { field: "side", .. })
        ));
        assert!(matches!(
            process(br#"{"side": 10, "thumb": 0}"#, 64),
            Err(ThumbError::OutOfRange { field: "thumb", .. })
        ));
        assert!(matches!(
            process(b"\x89PNG\r\n\x1a\nbroken", 64),
            Err(ThumbError::Decode(_))
        ));
    }
}
