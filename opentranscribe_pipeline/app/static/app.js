// The review app's only script: play buttons, the transcript following the audio, lazy clips.
// Everything shown is set with textContent (never innerHTML), so names stay text.
"use strict";

function player() {
  return document.getElementById("player");
}

function playClip(button) {
  const audio = player();
  if (!audio) return;
  document.querySelectorAll("button.play.playing").forEach((b) => b.classList.remove("playing"));
  button.classList.add("playing");
  audio.src = button.dataset.src;
  audio.play().catch(() => {});  // autoplay refusals: the controls still work
}

function clipButton(clip) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "play";
  b.dataset.src = clip.clip_url;
  b.dataset.seconds = (clip.end_s - clip.start_s).toFixed(3);
  b.title = "play " + (clip.end_s - clip.start_s).toFixed(1) + " s";
  b.textContent = "\u25B6";
  return b;
}

function loadClips(cell) {
  fetch("/api/speakers/" + encodeURIComponent(cell.dataset.gid) + "/clips", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : { clips: [] }))
    .then((data) => {
      if (!data.clips.length) cell.textContent = "–";
      data.clips.forEach((c) => cell.appendChild(clipButton(c)));
    })
    .catch(() => { cell.textContent = "?"; });
}

function followTranscript(audio) {
  const segs = Array.from(document.querySelectorAll(".seg"));
  const words = Array.from(document.querySelectorAll(".w"));
  let current = null;
  let currentWord = null;
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    const seg = segs.find((s) => t >= +s.dataset.start && t < +s.dataset.end) || null;
    if (seg !== current) {
      if (current) current.classList.remove("now");
      if (seg) {
        seg.classList.add("now");
        seg.scrollIntoView({ block: "nearest" });
      }
      current = seg;
    }
    const w = seg ? Array.from(seg.querySelectorAll(".w")).find((x) => t >= +x.dataset.start && t < +x.dataset.end) : null;
    if (w !== currentWord) {
      if (currentWord) currentWord.classList.remove("said");
      if (w) w.classList.add("said");
      currentWord = w;
    }
  });
  words.forEach((w) =>
    w.addEventListener("click", () => {
      audio.currentTime = +w.dataset.start;
      audio.play().catch(() => {});
    })
  );
  const data = document.getElementById("page-data");
  const start = data ? JSON.parse(data.textContent).start : 0;
  if (start > 0) {
    const seek = () => { audio.currentTime = start; };
    if (audio.readyState >= 1) seek(); else audio.addEventListener("loadedmetadata", seek, { once: true });
    const seg = segs.find((s) => start >= +s.dataset.start - 0.01 && start < +s.dataset.end);
    if (seg) seg.scrollIntoView({ block: "center" });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button.play");
    if (b) playClip(b);
  });
  document.querySelectorAll("td.clips[data-gid]").forEach(loadClips);
  const audio = player();
  if (audio && audio.classList.contains("follow")) followTranscript(audio);
});
