"""PyTorch's 8-bit CPU inference of the models of benches/quantized.rs (issue 19), for comparison.

The MLP 784-512-512-10 (ReLU) and the LeNet-like CNN of benches/common/models.rs (conv 5x5x32
SAME + bias, ReLU, max pool 2x2/2, conv 5x5x64 SAME + bias, ReLU, max pool, flatten, fc 1024
ReLU, fc 10) with random weights, quantized by eager-mode post-training static quantization
(`torch.ao.quantization`, backend "x86": conv/linear fused with their ReLU, per-channel int8
weights, uint8 activations with histogram-calibrated ranges, 4 calibration batches), timed
with the f32 model at batch 1 and 64: the median of many calls, after a warm-up.

Run: python3 benches/peers/quantized_torch.py [--threads 2] [--seconds 3]
"""

import argparse
import statistics
import time
import warnings

import torch
import torch.ao.quantization as tq
from torch import nn

warnings.filterwarnings("ignore")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.fc0 = nn.Linear(784, 512)
        self.relu0 = nn.ReLU()
        self.fc1 = nn.Linear(512, 512)
        self.relu1 = nn.ReLU()
        self.logits = nn.Linear(512, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu0(self.fc0(x))
        x = self.relu1(self.fc1(x))
        return self.dequant(self.logits(x))

    fuse = [["fc0", "relu0"], ["fc1", "relu1"]]


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(3136, 1024)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(1024, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        return self.dequant(self.fc2(x))

    fuse = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


def inputs(name, batch):
    g = torch.Generator().manual_seed(batch)
    shape = (batch, 784) if name == "mlp" else (batch, 1, 28, 28)
    return torch.randn(shape, generator=g)


def quantized(model, name):
    m = tq.fuse_modules(model, model.fuse)
    m.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(m, inplace=True)
    with torch.inference_mode():
        for k in range(4):
            m(inputs(name, 64 + k))
    return tq.convert(m)


def median_ms(model, x, seconds):
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 20:
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {a.threads} threads, engine {torch.backends.quantized.engine}")
    for name, cls in [("mlp", Mlp), ("lenet", LeNet)]:
        f32 = cls().eval()
        q = quantized(cls().eval(), name)
        for batch in [1, 64]:
            x = inputs(name, batch)
            if name == "lenet":
                x = x.contiguous(memory_format=torch.channels_last)
            tf, nf = median_ms(f32, x, a.seconds)
            ti, ni = median_ms(q, x, a.seconds)
            print(
                f"{name} batch {batch}: f32 {tf * 1e3:.1f} us ({nf} runs), "
                f"int8 {ti * 1e3:.1f} us ({ni} runs), int8 speed-up {tf / ti:.2f}x"
            )


if __name__ == "__main__":
    main()
