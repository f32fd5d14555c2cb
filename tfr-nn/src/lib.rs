//! Layers, losses, initializers, optimizers and the paper's models will live here, built from graph ops (issues 3 and 6).
