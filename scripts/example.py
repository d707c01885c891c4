#!/usr/bin/env python3
"""imgpipe example processing script: the template to copy.

Computes, honestly from the pixels of the preview imgpipe hands over (the
oriented 256 px thumbnail as binary PPM, so no image library is needed):
brightness, contrast, sharpness (variance of the Laplacian), colourfulness
(Hasler & Suesstrunk) and the three dominant colours. It also writes
histogram.json into the output dir, which imgpipe stores next to the image.

Two modes, one per imgpipe `processor.script.mode`:
  per-image:  example.py IMAGE OUT_DIR   request JSON on stdin, prints one JSON object
  stream:     example.py --stream        one request JSON per line in, one answer line out
"""
import json
import math
import os
import sys
from collections import Counter


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    # Header: "P6\n<w> <h>\n255\n" (imgpipe writes exactly this form).
    parts = data.split(b"\n", 3)
    if parts[0] != b"P6" or parts[2] != b"255":
        raise ValueError("not a binary PPM with maxval 255")
    width, height = (int(v) for v in parts[1].split())
    pixels = parts[3]
    if len(pixels) < width * height * 3:
        raise ValueError("PPM shorter than its header says")
    return width, height, pixels


def analyse(request):
    width, height, px = read_ppm(request["preview_path"])
    n = width * height
    luma = [0.0] * n
    rg_sum = yb_sum = rg_sq = yb_sq = 0.0
    colours = Counter()
    for i in range(n):
        r, g, b = px[3 * i], px[3 * i + 1], px[3 * i + 2]
        luma[i] = 0.2126 * r + 0.7152 * g + 0.0722 * b
        rg = r - g
        yb = 0.5 * (r + g) - b
        rg_sum += rg
        yb_sum += yb
        rg_sq += rg * rg
        yb_sq += yb * yb
        colours[(r >> 6, g >> 6, b >> 6)] += 1  # 4 levels a channel
    mean = sum(luma) / n
    std = math.sqrt(max(sum((v - mean) ** 2 for v in luma) / n, 0.0))

    # Variance of the 4-neighbour Laplacian: low means blurry.
    lap = []
    for y in range(1, height - 1):
        row = y * width
        for x in range(1, width - 1):
            i = row + x
            lap.append(luma[i - 1] + luma[i + 1] + luma[i - width] + luma[i + width] - 4 * luma[i])
    if lap:
        lap_mean = sum(lap) / len(lap)
        sharpness = sum((v - lap_mean) ** 2 for v in lap) / len(lap)
    else:
        sharpness = 0.0

    rg_mean, yb_mean = rg_sum / n, yb_sum / n
    rg_std = math.sqrt(max(rg_sq / n - rg_mean ** 2, 0.0))
    yb_std = math.sqrt(max(yb_sq / n - yb_mean ** 2, 0.0))
    colourfulness = math.hypot(rg_std, yb_std) + 0.3 * math.hypot(rg_mean, yb_mean)

    def hex_of(bin_):
        return "#%02x%02x%02x" % tuple(c * 64 + 32 for c in bin_)

    dominant = [{"colour": hex_of(c), "share": round(k / n, 4)} for c, k in colours.most_common(3)]
    with open(os.path.join(request["out_dir"], "histogram.json"), "w") as f:
        json.dump({hex_of(c): k for c, k in sorted(colours.items())}, f)
    return {
        "brightness": round(mean / 255, 4),
        "contrast": round(std / 255, 4),
        "sharpness": round(sharpness, 2),
        "blurry": sharpness < 100,
        "colourfulness": round(colourfulness, 2),
        "dominant_colours": dominant,
        "preview_size": [width, height],
    }


def stream():
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"id": request["id"], "ok": True, "fields": analyse(request)}
        except Exception as e:  # one bad image must not stop the worker
            answer = {"id": request["id"], "ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main():
    if sys.argv[1:] == ["--stream"]:
        stream()
    else:
        print(json.dumps(analyse(json.load(sys.stdin))))


if __name__ == "__main__":
    main()
