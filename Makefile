# Thin wrapper over CMake so the README's two commands stay short.
#   make path   configure, build, run the learning path (stages 1-4) on Fashion-MNIST
#   make demo   configure, build, run the short generated-data training demo
#   make test   configure, build, run the whole test suite
# CI=true (set by CI) builds with -Werror.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DBEAMLET_WERROR=ON
endif

.PHONY: all build path demo test clean

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

clean:
	rm -rf $(BUILD)
