// A meter of WebGPU buffer memory, for the worker (imported by the wasm through wasm-bindgen): it
// wraps GPUDevice.createBuffer and GPUBuffer.destroy to count the bytes of live buffers and their
// peak. Measurement only; it changes nothing the buffers do.
let live = 0;
let peak = 0;
let count = 0;
const sizes = new WeakMap();

export function installGpuMeter() {
  const Device = globalThis.GPUDevice;
  const Buffer = globalThis.GPUBuffer;
  if (!Device || !Buffer || Device.prototype.__sinkscopeMeter) return;
  const create = Device.prototype.createBuffer;
  Device.prototype.createBuffer = function (desc) {
    const buffer = create.call(this, desc);
    const size = Number((desc && desc.size) || 0);
    sizes.set(buffer, size);
    live += size;
    count += 1;
    if (live > peak) peak = live;
    return buffer;
  };
  const destroy = Buffer.prototype.destroy;
  Buffer.prototype.destroy = function () {
    const size = sizes.get(this);
    if (size !== undefined) {
      live -= size;
      count -= 1;
      sizes.delete(this);
    }
    return destroy.call(this);
  };
  Device.prototype.__sinkscopeMeter = true;
}

/** [live bytes, peak bytes, live buffers] */
export function gpuMeter() {
  return [live, peak, count];
}
