"""Entry-point target. Stays light: the heavy module loads on first use."""

from polydiff.protocol import Modality


class CurvesModality(Modality):
    name = "curves"
    description = "smooth 1-D curves (sums of sines, or your .npy array)"
    builtin_datasets = ("waves",)

    def default_config(self):
        return {
            "data": {"dataset": "waves", "length": 64, "size": 2000},
            "model": {"width": 64, "blocks": 4},
            "train": {"steps": 1500, "batch_size": 64, "lr": 2e-3},
            "sample": {"sampler": "heun", "steps": 18, "n": 16},
        }

    def build_dataset(self, source, config, split):
        from polydiff_curves.modality import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config):
        from polydiff_curves.modality import CurveNet

        return CurveNet(int(config["model"]["width"]), int(config["model"]["blocks"]))

    def write_samples(self, samples, out_dir, *, mask=None, cond=None, prefix="sample"):
        from polydiff_curves.modality import write_curves

        return write_curves(samples, out_dir, prefix)


modality = CurvesModality()
