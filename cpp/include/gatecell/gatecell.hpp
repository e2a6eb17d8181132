// SPDX-License-Identifier: MIT
#pragma once
// Everything a C++ application needs: configuration, sequence kernels, layers owning their
// weights, checkpoints saved from Python, and streaming inference.

#include "gatecell/layers.hpp"
#include "gatecell/model.hpp"
#include "gatecell/network.hpp"
#include "gatecell/threads.hpp"
#include "gatecell/shapes.hpp"
#include "gatecell/stream.hpp"
