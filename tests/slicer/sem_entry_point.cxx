// SlicerExecutionModel's executable wrapper (SEMCommandLineLibraryWrapper.cxx), as the Slicer extension links it with
// RepModeSegmentation.cxx compiled with main renamed ModuleEntryPoint (SEMMacroBuildCLI): the module must define that
// entry point with C linkage for this to link and run.
extern "C" int ModuleEntryPoint(int, char *[]);

int main(int argc, char **argv) { return ModuleEntryPoint(argc, argv); }
