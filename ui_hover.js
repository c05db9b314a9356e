// Hover thumbnails for a Plotly scatter drawn by st.plotly_chart (a components-v2 element, so
// this runs in the app's own document, no iframe). Plotly's hover label holds text only; this
// listens to the chart's plotly_hover / plotly_unhover events and shows the hovered point's
// image, cut from a sprite sheet the page ships, in a floating box beside the pointer.
//
// data: {chart: the st.plotly_chart key, sprite: PNG data URL, w, h: one cell's size, cols: cells
// per sprite row, scale: on-screen magnification, col: which customdata column holds the cell}.
// Every other customdata column is Plotly's own: [row, label, split, path, flag, ...].

const TIP_ID = "charlab-hover-thumb";

function tipElement() {
  let tip = document.getElementById(TIP_ID);
  if (tip) return tip;
  tip = document.createElement("div");
  tip.id = TIP_ID;
  tip.setAttribute("data-testid", "charlabHoverThumb");
  tip.style.cssText = "position:fixed;z-index:1000000;pointer-events:none;display:none;" +
    "background:#fff;border:1px solid #c8c8c8;border-radius:6px;padding:5px 5px 3px;" +
    "box-shadow:0 3px 10px rgba(0,0,0,.22);font:12px/1.3 sans-serif;color:#31333f;text-align:center";
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "display:block;image-rendering:pixelated;background:#000";
  const caption = document.createElement("div");
  caption.style.cssText = "margin-top:3px;max-width:160px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis";
  tip.append(canvas, caption);
  document.body.appendChild(tip);
  return tip;
}

// one state per page: the handlers attached to a chart read the latest sprite from here, so a
// rerun with another source re-points them without attaching twice
const state = (window.__charlabHover = window.__charlabHover || { data: null, sprite: null });

function place(tip, x, y) {
  const r = tip.getBoundingClientRect();
  const gap = 18;
  let left = x + gap, top = y + gap;
  if (left + r.width > window.innerWidth - 4) left = x - gap - r.width;  // flip to the pointer's left
  if (top + r.height > window.innerHeight - 4) top = y - gap - r.height;  // or above it
  tip.style.left = Math.max(4, left) + "px";
  tip.style.top = Math.max(4, top) + "px";
}

function show(ev) {
  const d = state.data, sprite = state.sprite;
  const pt = ev && ev.points && ev.points[0];
  if (!d || !sprite || !pt || !pt.customdata) return;
  const cell = Number(pt.customdata[d.col]);
  if (!(cell >= 0)) return;
  const tip = tipElement();
  const canvas = tip.firstChild;
  canvas.width = d.w;
  canvas.height = d.h;
  canvas.style.width = d.w * d.scale + "px";
  canvas.style.height = d.h * d.scale + "px";
  const draw = () => {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, d.w, d.h);
    ctx.drawImage(sprite, (cell % d.cols) * d.w, Math.floor(cell / d.cols) * d.h, d.w, d.h, 0, 0, d.w, d.h);
  };
  if (sprite.complete && sprite.naturalWidth) draw(); else sprite.addEventListener("load", draw, { once: true });
  const [row, label, split, path, flag] = pt.customdata;
  tip.lastChild.textContent = `${label} · ${split}` + (flag && flag !== "ok" ? ` · ${flag}` : "");
  tip.dataset.row = String(row);
  tip.dataset.cell = String(cell);
  tip.dataset.path = String(path);
  tip.style.display = "block";
  const e = ev.event || {};
  place(tip, e.clientX ?? state.x ?? 0, e.clientY ?? state.y ?? 0);
}

function hide() {
  const tip = document.getElementById(TIP_ID);
  if (tip) tip.style.display = "none";
}

function attach(chartKey) {
  // st.plotly_chart(key=K) sits in an element container with the class st-key-K
  const gd = document.querySelector(`.st-key-${chartKey} .js-plotly-plot`);
  if (!gd || typeof gd.on !== "function" || gd.__charlabHover) return;
  gd.__charlabHover = true;
  gd.on("plotly_hover", show);
  gd.on("plotly_unhover", hide);
  gd.addEventListener("mouseleave", hide);
}

export default function (component) {
  const d = component.data;
  if (!d || !d.sprite) return;
  if (!state.data || state.data.sprite !== d.sprite) {
    const sprite = new Image();
    sprite.src = d.sprite;
    state.sprite = sprite;
  }
  state.data = d;
  const track = (e) => { state.x = e.clientX; state.y = e.clientY; };
  document.addEventListener("mousemove", track, { passive: true });
  // the chart may mount after this element, and a rerun can replace its div: look until found,
  // then keep looking at a slow pace for a replacement
  attach(d.chart);
  const timer = setInterval(() => attach(d.chart), 500);
  return () => {
    clearInterval(timer);
    document.removeEventListener("mousemove", track);
    hide();
  };
}
