// Command validate-bundle checks an OLM bundle directory with the operator framework's own
// validation library (github.com/operator-framework/api), the code behind `operator-sdk bundle
// validate`, and prints the results as JSON.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
)

type finding struct {
	Level  string `json:"level"`
	Type   string `json:"type"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

type result struct {
	Name     string    `json:"name"`
	Errors   []finding `json:"errors"`
	Warnings []finding `json:"warnings"`
}

func findings(errs []errors.Error) []finding {
	out := []finding{}
	for _, e := range errs {
		out = append(out, finding{string(e.Level), string(e.Type), e.Field, e.Error()})
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: validate-bundle BUNDLE_DIR")
		os.Exit(2)
	}
	bundle, err := manifests.GetBundleFromDir(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot load bundle %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.ObjectValidator,
		validation.GoodPracticesValidator,
	)
	failed := false
	out := []result{}
	for _, r := range validators.Validate(bundle.ObjectsToValidate()...) {
		out = append(out, result{r.Name, findings(r.Errors), findings(r.Warnings)})
		failed = failed || r.HasError()
	}
	encoded, _ := json.MarshalIndent(map[string]any{
		"package": bundle.Package, "channels": bundle.Channels, "csv": bundle.CSV.GetName(),
		"results": out,
	}, "", "  ")
	fmt.Println(string(encoded))
	if failed {
		os.Exit(1)
	}
}
