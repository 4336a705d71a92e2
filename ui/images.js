// Images in the browser: scaling large photos down before upload, thumbnails.
//
// A phone photo is often 12 megapixels and several megabytes while the model
// looks at 299 x 299 pixels, so a photo whose longest side is over MAX_SIDE
// is redrawn at MAX_SIDE and sent as a JPEG. The photo's EXIF orientation is
// applied while decoding, as the server would apply it, since the re-encoded
// JPEG carries no EXIF. Transparent areas become white.
//
// Files the browser cannot decode (TIFF, or something that is not an image)
// are sent unchanged, so that the server says in words what is wrong.

export const MAX_SIDE = 1024;
export const JPEG_QUALITY = 0.9;
export const THUMB_SIDE = 96;
const THUMB_QUALITY = 0.7;

function fit(width, height, side) {
  const scale = Math.min(1, side / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

function draw(bitmap, size) {
  const canvas = document.createElement("canvas");
  canvas.width = size.width;
  canvas.height = size.height;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, size.width, size.height);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, size.width, size.height);
  return canvas;
}

function toJpeg(canvas, quality) {
  return new Promise((resolve, reject) => {
    canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("JPEG encoding failed"))),
      "image/jpeg",
      quality,
    );
  });
}

async function decode(blob) {
  try {
    return await createImageBitmap(blob, { imageOrientation: "from-image" });
  } catch {
    return null;
  }
}

/**
 * Prepares a photo for upload, scaling it down when it is large.
 *
 * Returns {blob, name, original, sent, scaled, thumb}: the blob to send and
 * its file name, the original and sent sizes ({width, height}, null when the
 * browser cannot decode the file), whether it was scaled, and a small JPEG
 * data URL for the recent list (null when undecodable).
 */
export async function prepareUpload(file) {
  const name = file.name || "pasted-image";
  const bitmap = await decode(file);
  if (!bitmap) {
    return { blob: file, name, original: null, sent: null, scaled: false, thumb: null };
  }

  try {
    const original = { width: bitmap.width, height: bitmap.height };
    const thumb = draw(bitmap, fit(bitmap.width, bitmap.height, THUMB_SIDE)).toDataURL(
      "image/jpeg",
      THUMB_QUALITY,
    );
    if (Math.max(original.width, original.height) <= MAX_SIDE) {
      return { blob: file, name, original, sent: original, scaled: false, thumb };
    }

    const sent = fit(original.width, original.height, MAX_SIDE);
    const blob = await toJpeg(draw(bitmap, sent), JPEG_QUALITY);
    const jpegName = name.replace(/\.[^.]*$/, "") + ".jpg";
    return { blob, name: jpegName, original, sent, scaled: true, thumb };
  } finally {
    bitmap.close();
  }
}
