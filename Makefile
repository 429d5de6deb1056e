# Thin wrapper over CMake so the README's two commands stay short.
#   make path   configure, build, run the learning path (stages 1-4) on Fashion-MNIST
#   make demo   configure, build, run the short generated-data training demo
#   make test       configure, build, run the whole test suite
#   make sanitize   the same suite built with ASan + UBSan and run with leak checking, in
#                   $(BUILD)-sanitize (cmake/sanitize.cmake)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (default 60) each, built with clang
#                   in $(BUILD)-fuzz, seeded by the parser tests of $(BUILD) (scripts/fuzz.sh)
# CI=true (set by CI) builds with -Werror; .ci/run runs test, sanitize and fuzz.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DBEAMLET_WERROR=ON
endif

.PHONY: all build path demo test sanitize fuzz clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

path: build
	BUILD=$(BUILD) scripts/learning_path.sh

demo: build
	$(BUILD)/beamlet demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Release optimizations with debug info, so reports name files and lines. The CUDA backend is
# left out: no GPU to run it here, and nvcc does not take the sanitizer flags.
sanitize:
	cmake -S . -B $(BUILD)-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEAMLET_SANITIZE=ON \
	  -DBEAMLET_WITH_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD)-sanitize -j $(JOBS)
	cd $(BUILD)-sanitize && ctest --output-on-failure -j $(JOBS)

fuzz: build
	BUILD=$(BUILD) FUZZ_BUILD=$(BUILD)-fuzz CMAKE_FLAGS="$(CMAKE_FLAGS)" scripts/fuzz.sh

clean:
	rm -rf $(BUILD) $(BUILD)-sanitize $(BUILD)-fuzz
