// tfvae browser demo: LiteRT.js runs the exported decoder (decoder_b1.tflite) on the CPU (WASM).
import {loadLiteRt, loadAndCompile, Tensor} from '@litertjs/core';

const SLIDERS = 5;       // latent dimensions with a slider
const STRIP = 8;         // images in the interpolation strip
const status = document.getElementById('status');

// Seeded standard-normal noise (mulberry32 + Box-Muller): randomness stays outside the graph.
function rng(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (n) => Array.from({length: n}, () => {
    const u = Math.max(uniform(), 1e-12), v = uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  });
}

async function main() {
  const card = await (await fetch('model/model_card.json')).json();
  const [H, W, C] = card.image_shape;
  const D = card.latent_dim;
  await loadLiteRt('wasm/');
  const model = await loadAndCompile('model/decoder_b1.tflite', {accelerator: 'wasm'});

  // z: number[D] -> Float32Array[H*W*C], the likelihood mean in [0, 1].
  async function decode(z) {
    const input = new Tensor(Float32Array.from(z), [1, D]);
    const outputs = await model.run('serving_default', {z: input});
    input.delete();
    const images = Float32Array.from(outputs.images.toTypedArray());
    for (const t of Object.values(outputs)) t.delete();
    return images;
  }

  function toImageData(pixels) {
    const data = new ImageData(W, H);
    for (let i = 0; i < H * W; i++) {
      const px = (c) => Math.round(255 * Math.min(1, Math.max(0, pixels[i * C + c])));
      const [r, g, b] = C === 1 ? [px(0), px(0), px(0)] : [px(0), px(1), px(2)];
      data.data.set([r, g, b, 255], 4 * i);
    }
    return data;
  }

  const raw = document.getElementById('raw');
  raw.width = W; raw.height = H;
  const view = document.getElementById('view').getContext('2d');
  view.imageSmoothingEnabled = false;
  let z = new Array(D).fill(0);

  // Draw z at 1:1 on the raw canvas (the exact 8-bit pixels) and scaled on the view.
  async function show(newZ) {
    z = Array.from(newZ);
    raw.getContext('2d').putImageData(toImageData(await decode(z)), 0, 0);
    view.drawImage(raw, 0, 0, view.canvas.width, view.canvas.height);
    for (let d = 0; d < Math.min(SLIDERS, D); d++) {
      document.getElementById(`dim${d}`).value = z[d].toFixed(2);
      document.getElementById(`dim${d}-value`).textContent = z[d].toFixed(2);
    }
  }

  const sliders = document.getElementById('sliders');
  for (let d = 0; d < Math.min(SLIDERS, D); d++) {
    const label = document.createElement('label');
    label.innerHTML = `z<sub>${d}</sub> <input id="dim${d}" type="range" min="-3" max="3" step="0.05" value="0">` +
                      ` <span id="dim${d}-value">0.00</span>`;
    sliders.appendChild(label);
    label.querySelector('input').addEventListener('input', (e) => {
      const next = z.slice();
      next[d] = Number(e.target.value);
      tfvae.busy = show(next);
    });
  }

  const strip = document.getElementById('strip');
  strip.width = STRIP * 64;
  const stripCtx = strip.getContext('2d');
  stripCtx.imageSmoothingEnabled = false;
  async function interpolate(a, b) {
    const tile = document.createElement('canvas');
    tile.width = W; tile.height = H;
    for (let i = 0; i < STRIP; i++) {
      const t = i / (STRIP - 1);
      tile.getContext('2d').putImageData(toImageData(await decode(a.map((v, k) => (1 - t) * v + t * b[k]))), 0, 0);
      stripCtx.drawImage(tile, i * 64, 0, 64, 64);
    }
  }

  let seed = 1;
  const sample = async () => {
    document.getElementById('seed').textContent = `seed ${seed}`;
    await show(rng(seed++)(D));
  };
  document.getElementById('sample').addEventListener('click', () => { tfvae.busy = sample(); });
  document.getElementById('interpolate').addEventListener('click', () => {
    const draw = rng(1000 + seed++);
    tfvae.busy = interpolate(draw(D), draw(D));
  });

  // A small API for tests and the curious: decode a given z, show it, read the raw pixels.
  const tfvae = window.tfvae = {
    decode: async (zs) => Array.from(await decode(zs)),
    show,
    rawPixels: () => Array.from(raw.getContext('2d').getImageData(0, 0, W, H).data),
    busy: Promise.resolve(),
    latentDim: D,
  };
  await sample();
  const draw = rng(999);
  await interpolate(draw(D), draw(D));
  document.getElementById('model').textContent =
    `${card.dataset}, latent dimension ${D}, ${card.likelihood} likelihood, export version ${card.version}`;
  for (const id of ['sample', 'interpolate']) document.getElementById(id).disabled = false;
  status.textContent = 'ready';
  tfvae.ready = true;
}

main().catch((err) => {
  status.textContent = `error: ${err.message || err}`;
  console.error(err);
});
