# The RepMode module: itk::RepModeImageFilter, itk::RepModeLabelMapFilter and their helpers (the repository's
# include/itkRepMode*.h), over repmode's C core, which the module builds as its library (src/).
itk_module(RepMode
  DEPENDS
    ITKCommon
    ITKStatistics
    ITKThresholding
  TEST_DEPENDS
    ITKTestKernel
  DESCRIPTION
    "RepMode networks (task-conditioned 3D U-Nets of MoDE layers): streamed prediction of a task and label maps"
  EXCLUDE_FROM_DEFAULT
)
