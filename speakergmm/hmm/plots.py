"""Teaching plots for the GMM-HMM: a Viterbi alignment over a spectrogram.

Built on :mod:`speakergmm.plotting` (no pyplot, so it works headless; saved atomically);
recognition results are drawn with :func:`speakergmm.plotting.plot_confusion_matrix`
(``show_accuracy=True``). matplotlib is an optional dependency
(``pip install speakergmm[plot]``).
"""

from __future__ import annotations

import os

import numpy as np

from speakergmm.plotting import new_figure, save_figure

__all__ = ["plot_alignment", "plot_technique_comparison", "state_segments"]


def state_segments(path: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of a state path as ``(state, first_frame, end_frame)`` (end exclusive)."""
    path = np.asarray(path)
    if path.size == 0:
        return []
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [path.size]])
    return [(int(path[a]), int(a), int(b)) for a, b in zip(starts, ends)]


def plot_alignment(signal: np.ndarray, sample_rate: int, state_path: np.ndarray,
                   frame_times: np.ndarray, path: str | os.PathLike | None = None,
                   title: str = "Viterbi alignment", log_emissions: np.ndarray | None = None,
                   n_fft: int = 256, hop_length: int = 40):
    """A Viterbi state path drawn over the utterance's spectrogram.

    Parameters
    ----------
    signal : (n_samples,) waveform
    sample_rate : Hz
    state_path : (T,) state of each feature frame (from ``decode``/``align``)
    frame_times : (T,) centre time in seconds of each feature frame (frames a VAD dropped
        are simply absent; their time is not shaded)
    log_emissions : (T, S) optional; when given, a second panel shows each state's
        emission log-likelihood per frame (relative to the frame's best state) with the path
        on top: why the path goes where it goes
    """
    signal = np.asarray(signal, dtype=np.float64)
    state_path = np.asarray(state_path)
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if state_path.shape != frame_times.shape:
        raise ValueError(f"state_path {state_path.shape} and frame_times {frame_times.shape} differ")
    n_panels = 2 if log_emissions is not None else 1
    fig = new_figure((9.0, 3.2 * n_panels))
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    window = np.hanning(n_fft)
    n_frames = max(1, 1 + (signal.size - n_fft) // hop_length)
    padded = np.pad(signal, (0, max(0, n_fft - signal.size)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:n_frames]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    spec_db = 10 * np.log10(power.T + 1e-10)
    vmax = spec_db.max()
    duration = signal.size / sample_rate
    spec = ax.imshow(spec_db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                     extent=(0, duration, 0, sample_rate / 2 / 1000))
    fig.colorbar(spec, ax=ax, pad=0.01, label="power (dB)")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(title)
    # Boundaries half-way between the last frame of a state and the first of the next.
    half = 0.5 * (np.median(np.diff(frame_times)) if frame_times.size > 1 else 0.01)
    for state, a, b in state_segments(state_path):
        start, end = frame_times[a] - half, frame_times[b - 1] + half
        ax.axvline(start, color="white", lw=1.2, alpha=0.9)
        ax.text(0.5 * (start + end), 0.93 * sample_rate / 2 / 1000, str(state), color="white",
                ha="center", va="top", fontsize=10, fontweight="bold")
    if frame_times.size:
        ax.axvline(frame_times[-1] + half, color="white", lw=1.2, alpha=0.9)
    if log_emissions is not None:
        log_emissions = np.asarray(log_emissions)
        ax2 = axes[1]
        n_states = log_emissions.shape[1]
        # Relative to the best state of each frame: loudness changes the likelihood of all
        # states together; what decides the path is how the states compare within a frame.
        relative = log_emissions - log_emissions.max(axis=1, keepdims=True)
        im = ax2.imshow(np.clip(relative.T, -40.0, 0.0), origin="lower", aspect="auto", cmap="viridis",
                        extent=(frame_times[0] - half, frame_times[-1] + half, -0.5, n_states - 0.5),
                        interpolation="nearest")
        fig.colorbar(im, ax=ax2, pad=0.01, label="log b_s(x_t) - max_s (nats)")
        ax2.step(frame_times, state_path, where="mid", color="red", lw=2, label="Viterbi path")
        ax2.set_ylabel("state")
        ax2.set_yticks(np.arange(n_states))
        ax2.legend(loc="upper left", fontsize=8)
        ax2.set_title("emission log-likelihood of each state (relative to the frame's best) and the best path")
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, duration)
    if path is not None:
        save_figure(fig, path, dpi=120)
    return fig


def plot_technique_comparison(accuracy: dict[str, dict[str, float]], path: str | os.PathLike,
                              title: str = "Accuracy per held-out speaker", pooled: dict[str, float] | None = None):
    """Grouped bars: ``accuracy[technique][group]`` (e.g. held-out speaker), one colour per technique.

    ``pooled`` (technique -> accuracy over all groups) adds a last group "all". The y axis
    starts below the smallest value so small differences stay visible; each bar is labelled.
    """
    techniques = list(accuracy)
    if not techniques:
        raise ValueError("no techniques to plot")
    groups = list(next(iter(accuracy.values())))
    if pooled is not None:
        groups = groups + ["all"]
        accuracy = {t: {**accuracy[t], "all": pooled[t]} for t in techniques}
    fig = new_figure((min(12.0, max(7.0, 0.3 * len(groups) * len(techniques))), 4.2))
    ax = fig.subplots()
    width = 0.8 / len(techniques)
    lowest = min(v for t in techniques for v in accuracy[t].values())
    for i, technique in enumerate(techniques):
        values = [100 * accuracy[technique][g] for g in groups]
        xs = np.arange(len(groups)) + (i - (len(techniques) - 1) / 2) * width
        bars = ax.bar(xs, values, width, label=technique)
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.2, f"{value:.1f}", ha="center",
                    va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(max(0.0, 100 * lowest - 5), 103)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left", ncol=min(3, len(techniques)))
    ax.grid(axis="y", alpha=0.3)
    if path is not None:
        save_figure(fig, path, dpi=130)
    return fig
