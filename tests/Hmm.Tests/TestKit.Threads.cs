using FluentAssertions;

namespace Hmm.Tests;

/// <summary>
/// A dedicated background thread running one function, for tests that need a second thread to hold the mmap
/// lock (its guard must be released on the thread that took it, so tasks and awaits do not fit).
/// </summary>
internal sealed class TestThread<T>
{
    private readonly Thread _thread;
    private T? _result;
    private Exception? _error;

    public TestThread(Func<T> body)
    {
        _thread = new Thread(() =>
        {
            try
            {
                _result = body();
            }
            catch (Exception error)
            {
                _error = error;
            }
        })
        {
            IsBackground = true,
        };
        _thread.Start();
    }

    /// <summary>Waits for the thread; false if it is still running after <paramref name="timeout"/>.</summary>
    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    /// <summary>The function's result once joined; rethrows what it threw.</summary>
    public T Result
    {
        get
        {
            _thread.IsAlive.Should().BeFalse("the thread was joined");
            if (_error is not null)
            {
                throw new InvalidOperationException("The test thread failed.", _error);
            }

            return _result!;
        }
    }
}
