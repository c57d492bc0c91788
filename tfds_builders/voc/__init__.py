"""Pascal VOC plate archives (the Kaggle sets), read defensively into TFDS examples.

Shared by the `car_plates` and `number_plates` builders, which differ only in their
`kaggle.KaggleSource` constants. One module per role: `archives` (reading members safely),
`kaggle` (finding or downloading the archive), `annotations` (VOC XML and boxes), `images`
(checking the pixels, choosing the stored bytes), `report` (the counts) and `builder`
(pairing, splits, examples and `VocPlatesBuilder`, the builders' base class).

What happens to bad input (every case is counted, and the counts end preparation in one log
line):

- an image without annotation, or an annotation without image: skipped;
- an image that does not decode (corrupt, truncated): skipped;
- an image above `images.MAX_IMAGE_PIXELS`: skipped from its header, never decoded;
- malformed XML (or XML with a DTD, refused to rule out entity expansion): skipped, named;
- an annotation whose <size> disagrees with the image's pixels: skipped (its boxes would be
  in another frame);
- a box partly outside the image: clipped; a box with no area left: dropped;
- an unknown class name: preparation fails, listing the known names;
- an archive member whose path escapes the archive's folder (zip-slip, or a symlink out of
  an unpacked folder): preparation fails.

Images are stored as RGB. An 8-bit RGB JPEG keeps its bytes (no second lossy generation);
anything else (RGBA/paletted/grey PNGs, CMYK JPEGs) is converted to RGB and stored as PNG,
which is lossless. RGBA loses its alpha channel, as TensorFlow's 3-channel decoders do (the
car_plates alpha only marks a few edge pixels).

Splits are a deterministic function of the file stem: the first 8 bytes of
SHA-256(stem), big-endian, modulo 100 -> train below 80, validation below 90, test above.
"""
