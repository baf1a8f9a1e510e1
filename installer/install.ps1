# sine-edit installer for Windows: finds a Python >= 3.10 and hands every argument to install.py.
#   powershell -ExecutionPolicy Bypass -File installer\install.ps1 [--model ID] [--dry-run] [--uninstall] ...
$ErrorActionPreference = "Stop"
$installer = Join-Path $PSScriptRoot "install.py"
$check = "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)"
$candidates = @()
if ($env:PYTHON) { $candidates += ,@($env:PYTHON) }
foreach ($v in "3.13", "3.12", "3.11", "3.10") { $candidates += ,@("py", "-$v") }
$candidates += ,@("python"); $candidates += ,@("python3")
foreach ($c in $candidates) {
    $exe = $c[0]; $pre = @($c | Select-Object -Skip 1)
    if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
    & $exe @pre -c $check 2>$null
    if ($LASTEXITCODE -eq 0) {
        & $exe @pre $installer @args
        exit $LASTEXITCODE
    }
}
Write-Error ("sine-edit needs Python 3.10 or newer (3.11+ for the backend). " +
    "Install it from https://www.python.org/downloads/ (tick 'Add to PATH') or set `$env:PYTHON, then run this again.")
exit 1
