// imgpipe's upload page: plain JavaScript, no build step.
"use strict";

const threshold = Number(document.body.dataset.directThreshold) || Infinity;
const credentialInput = document.getElementById("credential");
const drop = document.getElementById("drop");
const picker = document.getElementById("picker");
const list = document.getElementById("files");

credentialInput.value = sessionStorage.getItem("imgpipe-credential") || "";
credentialInput.addEventListener("change", () =>
  sessionStorage.setItem("imgpipe-credential", credentialInput.value.trim()));

// Error codes in words (the API's stable codes; see the README's table).
const WORDS = {
  unsupported_media_type: "This file is not an image imgpipe accepts (JPEG, PNG, WebP, GIF, TIFF or BMP).",
  too_large: "This file is larger than the server accepts.",
  empty_body: "This file is empty.",
  unauthorized: "The server needs a valid API key or token.",
  forbidden: "This key or token may not do that.",
  rate_limited: "Too many requests right now; try again shortly.",
  storage_unavailable: "The server's storage is not answering; try again shortly.",
  shutting_down: "The server is restarting; try again shortly.",
  timeout: "The upload took too long.",
  upload_incomplete: "The upload did not arrive completely.",
  erased: "This image was erased.",
  not_found: "The image is gone (expired, erased, or not visible to you).",
};

const REASONS = {
  decode_failed: "the image could not be decoded",
  truncated: "the file is cut short",
  corrupt: "the file is damaged",
  too_large: "the image's dimensions are over the limit",
  unsupported_format: "the format is not one imgpipe processes",
  missing_raw: "the original was gone before processing",
  script_failed: "the processing script failed",
  script_timeout: "the processing script took too long",
  script_bad_output: "the processing script's output was not valid",
};

function headers(extra) {
  const h = new Headers(extra || {});
  const credential = credentialInput.value.trim();
  if (credential) h.set("Authorization", "Bearer " + credential);
  return h;
}

function describe(status, body) {
  const code = body && body.error;
  if (code && WORDS[code]) return `${WORDS[code]} (${code})`;
  if (code) return `${body.detail || code} (${code})`;
  return `The server answered ${status}.`;
}

// XHR, for upload progress (fetch has none).
function send(method, url, body, hdrs, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    hdrs.forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let json = null;
      try { json = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({ status: xhr.status, body: json });
    };
    xhr.onerror = () => reject(new Error("the connection failed"));
    xhr.send(body);
  });
}

async function postJson(url, value) {
  const response = await fetch(url, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: value === undefined ? undefined : JSON.stringify(value),
  });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  return { status: response.status, body };
}

// Small files through the API; large ones straight to storage.
async function upload(file, row) {
  if (file.size > threshold) {
    const ticket = await postJson("/v1/uploads", { bytes: file.size });
    if (ticket.status !== 201) throw new Error(describe(ticket.status, ticket.body));
    const put = await send("PUT", ticket.body.url, file, new Headers(ticket.body.headers), row.progress);
    if (put.status < 200 || put.status > 299) throw new Error(describe(put.status, put.body));
    row.progress(1);
    const done = await postJson(`/v1/uploads/${ticket.body.id}/complete`);
    if (done.status !== 202) throw new Error(describe(done.status, done.body));
    return done.body.id;
  }
  const answer = await send("POST", "/v1/images", file, headers(), row.progress);
  if (answer.status !== 202) throw new Error(describe(answer.status, answer.body));
  return answer.body.id;
}

async function follow(id, row) {
  for (let attempt = 0; attempt < 240; attempt++) {
    const response = await fetch(`/v1/images/${id}`, { headers: headers() });
    const body = await response.json().catch(() => null);
    if (response.status !== 200) throw new Error(describe(response.status, body));
    if (body.status === "processed") return body;
    if (body.status === "quarantined") {
      const code = (body.reason || "").split(":")[0];
      throw new Error(`Not processed: ${REASONS[code] || body.reason} (${code})`);
    }
    row.state(body.status === "processing" ? "Processing…" : "Waiting to be processed…");
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("Still not processed after two minutes.");
}

async function showThumbnail(id, row) {
  const response = await fetch(`/v1/images/${id}/thumbnail`, { headers: headers() });
  if (response.status !== 200) return;
  row.thumbnail(URL.createObjectURL(await response.blob()));
}

const SHOWN = ["width", "height", "format", "bytes", "orientation", "exif_taken_at", "phash", "expires_at"];

function addRow(file) {
  const li = document.createElement("li");
  li.className = "file";
  li.innerHTML = `<div class="thumb-empty"></div>
    <div><div class="name"></div><progress max="1" value="0"></progress>
    <div class="state">Uploading…</div><table class="meta"></table></div>`;
  li.querySelector(".name").textContent = `${file.name} (${Math.ceil(file.size / 1024)} KiB)`;
  list.appendChild(li);
  const stateEl = li.querySelector(".state");
  return {
    element: li,
    progress: (fraction) => { li.querySelector("progress").value = fraction; },
    state: (text, kind) => { stateEl.textContent = text; stateEl.className = "state " + (kind || ""); },
    thumbnail: (url) => {
      const img = document.createElement("img");
      img.alt = `Thumbnail of ${file.name}`;
      img.src = url;
      li.querySelector(".thumb-empty").replaceWith(img);
    },
    metadata: (meta) => {
      const table = li.querySelector("table.meta");
      for (const key of SHOWN) {
        if (meta[key] === undefined || meta[key] === null) continue;
        const tr = table.insertRow();
        tr.insertCell().textContent = key.replace(/_/g, " ");
        tr.insertCell().textContent = String(meta[key]);
      }
    },
  };
}

async function handle(file) {
  const row = addRow(file);
  try {
    const id = await upload(file, row);
    row.element.dataset.imageId = id;
    row.state("Uploaded; waiting to be processed…");
    const status = await follow(id, row);
    await showThumbnail(id, row);
    row.metadata({ ...(status.metadata || {}), expires_at: status.expires_at });
    row.state("Processed", "done");
    row.element.dataset.outcome = "processed";
  } catch (e) {
    row.progress(0);
    row.state(e.message, "error");
    row.element.dataset.outcome = "error";
  }
}

function take(files) {
  for (const file of files) handle(file);
}

drop.addEventListener("click", () => picker.click());
drop.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && picker.click());
picker.addEventListener("change", () => { take(picker.files); picker.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  take(e.dataTransfer.files);
});
