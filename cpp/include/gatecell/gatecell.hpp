// SPDX-License-Identifier: MIT
#pragma once
// Everything a C++ application needs: configuration, shapes and the sequence kernels.

#include "gatecell/network.hpp"
#include "gatecell/threads.hpp"
#include "gatecell/shapes.hpp"
