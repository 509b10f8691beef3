// An ITK pipeline with itk::RepModeImageFilter: a volume of any scalar type in, one task's prediction out, and with
// LABELS its label map (itk::RepModeLabelMapFilter: 1 where the prediction passes the task's threshold, as
// `repmode predict --labels`), streamed so that a volume larger than memory goes through in pieces (MetaImage and
// uncompressed NIfTI stream both ways).
//
//   repmode-itk-predict MODEL TASK INPUT OUTPUT [PIECES [LABELS]]
//   e.g. build/bin/repmode-itk-predict examples/models/cells.safetensors nuclei build/demo/cells/signal.nrrd nuclei.mha 4 nuclei-labels.mha
#include <cstdlib>
#include <iostream>

#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>

#include "itkRepModeImageFilter.h"
#include "itkRepModeLabelMapFilter.h"
#include "itkRepModeNormalization.h"

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 7) {
        std::cerr << "usage: " << argv[0] << " MODEL TASK INPUT OUTPUT [PIECES [LABELS]]\n";
        return 1;
    }
    // Without ITK's generated factory registration (UseITK), the formats are registered by hand.
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::NiftiImageIOFactory::RegisterOneFactory();
    using Image = itk::Image<float, 3>;
    const unsigned pieces = argc >= 6 ? static_cast<unsigned>(std::atoi(argv[5])) : 4;
    try {
        auto reader = itk::ImageFileReader<Image>::New();
        reader->SetFileName(argv[3]);
        auto predict = itk::RepModeImageFilter<Image>::New();
        predict->SetInput(reader->GetOutput());
        predict->SetModelFileName(argv[1]);
        predict->SetTask(argv[2]);
        predict->UpdateOutputInformation(); // loads the model: its normalization method

        // The network expects the input normalized over the whole volume as in training (z-score or percentile
        // clipping, the model's repmode.normalization): the parameters come from two streamed passes, so the
        // prediction below can stream its input too.
        predict->SetInputNormalization(itk::RepModeNormalization<Image>::ComputeStreamed(
            reader->GetOutput(), pieces, predict->GetNormalization()));

        auto writer = itk::ImageFileWriter<Image>::New();
        writer->SetInput(predict->GetOutput());
        writer->SetFileName(argv[4]);
        writer->SetNumberOfStreamDivisions(pieces);
        writer->Update();
        std::cout << "wrote " << argv[4] << " (" << predict->GetTaskDescription().name << ", "
                  << (predict->GetTaskDescription().kind == RM_TASK_BINARY ? "probability" : "intensity") << ")\n";

        if (argc == 7) {
            // The task's threshold from the model, else 0.5 on a probability or Otsu's threshold of the whole
            // prediction (which then asks the prediction for the whole volume at once).
            using Labels = itk::Image<unsigned char, 3>;
            auto label_map = itk::RepModeLabelMapFilter<Image, Labels>::New();
            label_map->SetTasks({predict->GetTaskDescription()});
            label_map->SetPrediction(0, predict->GetOutput());
            auto label_writer = itk::ImageFileWriter<Labels>::New();
            label_writer->SetInput(label_map->GetOutput());
            label_writer->SetFileName(argv[6]);
            label_writer->SetNumberOfStreamDivisions(pieces);
            label_writer->Update();
            std::cout << "wrote " << argv[6] << " (label 1: " << predict->GetTaskDescription().name << " > "
                      << label_map->GetThresholdsUsed()[0] << ")\n";
        }
    } catch (const itk::ExceptionObject &e) {
        std::cerr << "repmode-itk-predict: " << e.GetDescription() << '\n';
        return 1;
    }
    return 0;
}
